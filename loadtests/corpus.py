"""A realistic labelled corpus: Debian package descriptions labelled by their section.

The source is `apt-cache dumpavail` (run `apt-get update` once first). Made-up sentences hide real
costs (vocabulary size, text length, class imbalance); these texts do not. `sample_rows` draws
with replacement and varies each drawn text so that a million rows keep growing the vocabulary.

    python -m loadtests.corpus --stats
    python -m loadtests.corpus --rows 1000000 --out var/corpus.jsonl   # never commit the output
    python -m loadtests.corpus --labels games,science,fonts,sound,perl,python --per-label 150 \\
        --out tests/fixtures/debian_descriptions.jsonl   # the small committed test fixture
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

MAX_TEXT_CHARS = 1_000
SECTION_PREFIXES = ("contrib/", "non-free/", "non-free-firmware/")


class CorpusUnavailableError(RuntimeError):
    """No package descriptions could be read from apt."""


def read_dumpavail() -> str:
    """Return the output of `apt-cache dumpavail` (empty when apt has no lists)."""
    try:
        result = subprocess.run(
            ["apt-cache", "dumpavail"], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return ""
    return result.stdout


def parse_stanzas(dump: str) -> Iterator[dict[str, str]]:
    """Yield each package stanza as a field dict; continuation lines join their field."""
    fields: dict[str, str] = {}
    last_key = ""
    for line in dump.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last_key = {}, ""
        elif line[0] in " \t" and last_key:
            # " ." marks an empty paragraph line in a long description.
            fields[last_key] += "\n" + ("" if line.strip() == "." else line.strip())
        elif ":" in line:
            last_key, _, value = line.partition(":")
            fields[last_key] = value.strip()
    if fields:
        yield fields


def stanza_to_row(fields: dict[str, str]) -> tuple[str, str] | None:
    """Turn one stanza into (text, label), or None when it lacks a description or section."""
    description = fields.get("Description", "")
    section = fields.get("Section", "")
    if not description or not section:
        return None
    for prefix in SECTION_PREFIXES:
        section = section.removeprefix(prefix)
    text = " ".join(description.split())[:MAX_TEXT_CHARS]
    return text, section


def rows_from_dump(dump: str, *, min_per_label: int = 50) -> list[tuple[str, str]]:
    """Parse a dumpavail text into (text, label) rows, one per package, sorted by package name."""
    by_package: dict[str, tuple[str, str]] = {}
    for fields in parse_stanzas(dump):
        row = stanza_to_row(fields)
        # The same package may appear in several suites (e.g. security updates): keep the first.
        if row is not None and fields.get("Package") and fields["Package"] not in by_package:
            by_package[fields["Package"]] = row
    counts = Counter(label for _, label in by_package.values())
    return [
        by_package[name]
        for name in sorted(by_package)
        if counts[by_package[name][1]] >= min_per_label
    ]


def load_debian_corpus(min_per_label: int = 50) -> list[tuple[str, str]]:
    """Return (text, label) rows from apt, dropping labels with fewer than min_per_label rows."""
    rows = rows_from_dump(read_dumpavail(), min_per_label=min_per_label)
    if not rows:
        raise CorpusUnavailableError(
            "apt-cache dumpavail returned no packages: run `apt-get update` once (as root), "
            "then try again"
        )
    return rows


def vary_text(text: str, index: int, rng: random.Random, donor: str) -> str:
    """Return text with a few words spliced from donor and one synthetic token from index."""
    words = text.split()
    donor_words = donor.split()
    if donor_words:
        start = rng.randrange(len(donor_words))
        words.extend(donor_words[start : start + rng.randint(1, 3)])
    # A token unique to this sample index keeps the vocabulary growing with the row count,
    # like product names, versions and typos do in real data.
    words.insert(rng.randrange(len(words) + 1), f"x{index:x}")
    return " ".join(words)


def sample_rows(
    corpus: list[tuple[str, str]], n: int, *, seed: int = 0
) -> Iterator[tuple[str, str]]:
    """Yield n rows drawn from corpus: as-is while n fits, then with replacement and varied text."""
    rng = random.Random(seed)
    if n <= len(corpus):
        yield from rng.sample(corpus, n)
        return
    for index in range(n):
        text, label = corpus[rng.randrange(len(corpus))]
        donor, _ = corpus[rng.randrange(len(corpus))]
        yield vary_text(text, index, rng, donor), label


def sample_per_label(
    corpus: list[tuple[str, str]], labels: list[str], per_label: int, *, seed: int = 0
) -> list[tuple[str, str]]:
    """Return up to per_label rows of each given label (a small balanced fixture), seeded."""
    rng = random.Random(seed)
    picked: list[tuple[str, str]] = []
    for label in labels:
        rows = [row for row in corpus if row[1] == label]
        picked.extend(rng.sample(rows, min(per_label, len(rows))))
    return picked


def write_jsonl(rows: Iterable[tuple[str, str]], out: Path) -> int:
    """Write rows as {"text", "label"} JSON lines; return the number written."""
    count = 0
    with out.open("w", encoding="utf-8") as handle:
        for text, label in rows:
            handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
            count += 1
    return count


def print_stats(rows: list[tuple[str, str]]) -> None:
    """Print row and label counts and the label distribution."""
    counts = Counter(label for _, label in rows)
    lengths = sorted(len(text) for text, _ in rows)
    print(f"rows: {len(rows)}  labels: {len(counts)}  median text chars: {lengths[len(rows) // 2]}")
    for label, count in counts.most_common():
        print(f"{count:8d}  {100 * count / len(rows):5.1f}%  {label}")


def main(
    argv: list[str] | None = None,
    *,
    load: Callable[[int], list[tuple[str, str]]] = load_debian_corpus,
    min_per_label: int = 50,
    description: str | None = None,
) -> int:
    """Command line: --stats, or --rows N --out FILE, for this corpus or another `load`."""
    parser = argparse.ArgumentParser(description=description or __doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="number of rows to write (sampled, seeded)")
    parser.add_argument("--out", type=Path, help="JSON-lines output file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-per-label", type=int, default=min_per_label)
    parser.add_argument("--stats", action="store_true", help="print corpus statistics")
    parser.add_argument("--labels", help="comma-separated labels: write --per-label rows of each")
    parser.add_argument("--per-label", type=int, default=150)
    args = parser.parse_args(argv)
    if not args.stats and not ((args.rows or args.labels) and args.out):
        parser.error("give --stats, or --rows N --out FILE, or --labels A,B --out FILE")
    try:
        corpus = load(args.min_per_label)
    except CorpusUnavailableError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.stats:
        print_stats(corpus)
    if args.labels and args.out:
        fixture = sample_per_label(corpus, args.labels.split(","), args.per_label, seed=args.seed)
        written = write_jsonl(fixture, args.out)
        print(f"wrote {written} rows to {args.out}")
    elif args.rows and args.out:
        written = write_jsonl(sample_rows(corpus, args.rows, seed=args.seed), args.out)
        print(f"wrote {written} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

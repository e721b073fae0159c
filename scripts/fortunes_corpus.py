"""A second real labelled corpus: Debian's fortune cookies, labelled by the file they come from.

Install once (as root): `apt-get install -y fortunes fortunes-min fortunes-bofh-excuses`. Each
file under /usr/share/games/fortunes is a category (computers, food, law, literature, love,
politics, science, startrek, ...) of real English quotes, jokes and definitions, one per entry,
entries separated by a line holding only "%". Unlike the package descriptions (short, technical,
near-templated) these are longer prose whose categories overlap heavily: a much harder task.

    python -m scripts.fortunes_corpus --stats
    python -m scripts.fortunes_corpus --rows 800 --out tests/fixtures/fortunes.jsonl  # the fixture
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from loadtests.corpus import CorpusUnavailableError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
MAX_TEXT_CHARS = 1_000
# Not prose (pictures) or not English (fortunes-mario is Portuguese): a giveaway, not a topic.
SKIPPED_PREFIXES = ("art", "ascii-art", "mario.")


class FortunesUnavailableError(CorpusUnavailableError):
    """No fortune files are installed."""


def read_fortunes_file(path: Path) -> list[str]:
    """Return the entries of one fortune file, whitespace collapsed, empty entries dropped."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    entries = (" ".join(entry.split()) for entry in raw.split("\n%\n"))
    return [entry.removesuffix(" %")[:MAX_TEXT_CHARS] for entry in entries if entry.strip("% ")]


def load_fortunes_corpus(
    directory: Path = FORTUNES_DIR, *, min_per_label: int = 20
) -> list[tuple[str, str]]:
    """Return (text, category) rows, one per distinct fortune, sorted by category then text."""
    rows: dict[str, str] = {}
    files = sorted(directory.glob("*")) if directory.is_dir() else []
    for path in files:
        if path.suffix in (".dat", ".u8") or path.name.startswith(SKIPPED_PREFIXES):
            continue
        if not path.is_file():
            continue
        for text in read_fortunes_file(path):
            rows.setdefault(text, path.name)  # a fortune in two files keeps its first category
    counts = Counter(rows.values())
    corpus = sorted(
        ((text, label) for text, label in rows.items() if counts[label] >= min_per_label),
        key=lambda row: (row[1], row[0]),
    )
    if not corpus:
        raise FortunesUnavailableError(
            f"no fortunes under {directory}: run `apt-get install -y fortunes fortunes-min "
            "fortunes-bofh-excuses` once (as root)"
        )
    return corpus


def main(argv: list[str] | None = None) -> int:
    """Command line: --stats, or --rows N --out FILE (the corpus builder's, on the fortunes)."""
    from loadtests.corpus import main as corpus_main

    return corpus_main(
        argv,
        load=lambda min_per_label: load_fortunes_corpus(min_per_label=min_per_label),
        min_per_label=20,
        description=__doc__.splitlines()[0],
    )


if __name__ == "__main__":
    sys.exit(main())

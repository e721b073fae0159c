"""Holdout quality of the service's training against the scikit-learn lines a user would write.

For each corpus, row count and seed: one seeded sample (loadtests.corpus.sample_rows: as-is up to
the corpus size, then drawn with replacement and varied), one stratified 80/20 split with the same
seed (the service's own `split_holdout`, so every method sees the same rows), then each method
fitted on the 80 % and scored on the 20 %: `LinearSVC()` and `LogisticRegression()` on
`TfidfVectorizer()` features (scikit-learn defaults), and the service's training (`choose_plan` +
`fit_model`). Each fit runs in a fresh process so its peak RSS (VmHWM, reset once the rows are in
memory) is its own.

    python -m scripts.classifier_quality --corpora debian,fortunes --sizes 1000,10000,100000
    python -m scripts.classifier_quality --sizes 1000,2000,5000 --seeds 0,1,2   # split by split
    python -m scripts.classifier_quality --sizes 1000000 --timeout 1800 --json-out var/q.jsonl
    python -m scripts.classifier_quality --corpora fixture:debian_sample,fixture:fortunes \
        --sizes 500,1000 --seeds 0,1,2,3    # the first rows of a committed fixture, split by seed

After the rows, a split-by-split table: the service against the better baseline on each score.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

METHODS = ("linearsvc", "logreg", "service")
CORPORA = ("debian", "fortunes")


FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"


def load_corpus(name: str) -> list[tuple[str, str]]:
    """Return the (text, label) rows of a named corpus ("fixture:NAME": a committed fixture)."""
    if name.startswith("fixture:"):
        lines = (FIXTURES / f"{name.removeprefix('fixture:')}.jsonl").read_text("utf-8")
        return [(row["text"], row["label"]) for row in map(json.loads, lines.splitlines())]
    if name == "debian":
        from loadtests.corpus import load_debian_corpus

        return load_debian_corpus()
    from scripts.fortunes_corpus import load_fortunes_corpus

    return load_fortunes_corpus()


def peak_mib() -> int:
    """Return this process's peak RSS (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise KeyError("VmHWM")


def measure(corpus_name: str, rows: int, method: str, seed: int = 0) -> dict[str, Any]:
    """Fit one method on the 80 % split and score it on the 20 % (run in a fresh process)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.svm import LinearSVC

    from algorithm.ml.evaluation import split_holdout
    from algorithm.ml.search import choose_plan
    from algorithm.ml.training import fit_model, predict_labels
    from loadtests.corpus import sample_rows

    corpus = load_corpus(corpus_name)
    # A fixture is already a sample: its first rows, whatever the seed (which splits them).
    sample = (
        corpus[:rows]
        if corpus_name.startswith("fixture:")
        else list(sample_rows(corpus, rows, seed=seed))
    )
    texts = [text for text, _ in sample]
    labels = [label for _, label in sample]
    del sample, corpus
    split = split_holdout(labels, holdout_fraction=0.2, seed=seed)
    if split is None:
        raise SystemExit(f"{corpus_name} at {rows} rows cannot be split")
    train_texts = [texts[i] for i in split.train_rows]
    train_labels = [labels[i] for i in split.train_rows]
    test_texts = [texts[i] for i in split.holdout_rows]
    expected = [labels[i] for i in split.holdout_rows]
    del texts, labels
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS from here on: the fit, not the rows
    started = time.perf_counter()
    chosen: dict[str, Any] = {}
    if method == "service":
        plan = choose_plan(train_texts, train_labels)
        chosen = plan.as_dict()
        model = fit_model(train_texts, train_labels, plan=plan)
        fit_seconds = time.perf_counter() - started
        predicted = predict_labels(model, test_texts)
    else:
        vectorizer = TfidfVectorizer()
        classifier = LinearSVC() if method == "linearsvc" else LogisticRegression()
        classifier.fit(vectorizer.fit_transform(train_texts), np.asarray(train_labels))
        fit_seconds = time.perf_counter() - started
        predicted = [str(label) for label in classifier.predict(vectorizer.transform(test_texts))]
    return {
        "corpus": corpus_name,
        "rows": rows,
        "seed": seed,
        "labels": len(set(train_labels)),
        "method": method,
        "accuracy": round(float(accuracy_score(expected, predicted)), 4),
        "macro_f1": round(
            float(f1_score(expected, predicted, average="macro", zero_division=0)), 4
        ),
        "fit_seconds": round(fit_seconds, 1),
        "peak_mib": peak_mib(),
        "chosen": chosen,
    }


def run_measurement(
    corpus: str, rows: int, method: str, timeout: float, seed: int = 0
) -> dict[str, Any]:
    """Run `measure` in a child process; a timeout or a crash becomes a row that says so."""
    command = [
        sys.executable,
        "-W",
        "ignore",
        "-m",
        "scripts.classifier_quality",
        "--child",
        f"{corpus},{rows},{method},{seed}",
    ]
    base = {"corpus": corpus, "rows": rows, "seed": seed, "method": method}
    started = time.perf_counter()
    try:
        output = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {**base, "error": f"did not finish in {timeout:.0f} s"}
    if output.returncode != 0:
        return {**base, "error": output.stderr.strip().splitlines()[-1:] or ["crashed"]}
    result = dict(json.loads(output.stdout.strip().splitlines()[-1]))
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def format_row(result: dict[str, Any]) -> str:
    """Return one markdown table row for a result."""
    if "error" in result:
        cells = [
            result["corpus"],
            f"{result['rows']:,}",
            str(result["seed"]),
            "",
            result["method"],
            str(result["error"]),
        ]
        return "| " + " | ".join(cells) + " | | | | |"
    chosen = ", ".join(
        f"{key}={value}"
        for key, value in result["chosen"].items()
        if key not in ("chosen_by", "validation")
    )
    cells = [
        result["corpus"],
        f"{result['rows']:,}",
        str(result["seed"]),
        str(result["labels"]),
        result["method"],
        f"{result['accuracy']:.3f}",
        f"{result['macro_f1']:.3f}",
        f"{result['fit_seconds']:.1f}",
        f"{result['peak_mib']:,}",
        chosen,
    ]
    return "| " + " | ".join(cells) + " |"


def format_comparison(results: list[dict[str, Any]]) -> list[str]:
    """Split by split: the service minus the better baseline on each score, in points."""
    header = (
        "| corpus | rows | seed | better baseline acc / F1 | service acc / F1 | diff | chosen |"
    )
    lines = [header, "|---|---|---|---|---|---|---|"]
    runs: dict[tuple[str, int, int], dict[str, dict[str, Any]]] = {}
    for result in results:
        if "error" not in result:
            runs.setdefault((result["corpus"], result["rows"], result["seed"]), {})[
                result["method"]
            ] = result
    for (corpus, rows, seed), by_method in runs.items():
        baselines = [by_method[m] for m in ("linearsvc", "logreg") if m in by_method]
        if "service" not in by_method or not baselines:
            continue
        service = by_method["service"]
        better = [max(b[metric] for b in baselines) for metric in ("accuracy", "macro_f1")]
        diff = [
            100 * (service[m] - b) for m, b in zip(("accuracy", "macro_f1"), better, strict=True)
        ]
        plan = service["chosen"]
        chosen = (
            "`LinearSVC()` defaults"
            if plan["solver"] == "liblinear" and not plan["sublinear_tf"]
            else f"{plan['solver']}, {'words+pairs' if plan['ngram_max'] == 2 else 'words'}"
            f"{'+characters' if plan.get('characters') else ''}, "
            f"C={plan['regularization']}{', balanced' if plan['class_weight'] else ''}"
        )
        lines.append(
            f"| {corpus} | {rows:,} | {seed} | {better[0]:.3f} / {better[1]:.3f} | "
            f"{service['accuracy']:.3f} / {service['macro_f1']:.3f} | "
            f"{diff[0]:+.1f} / {diff[1]:+.1f} | {chosen} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line: print the comparison table, one row per corpus, size and method."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", default=",".join(CORPORA))
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0", help="sample and split seeds, one row each")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per fit")
    parser.add_argument("--json-out", type=Path, help="also append each result as a JSON line")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        corpus, rows, method, seed = args.child.split(",")
        print(json.dumps(measure(corpus, int(rows), method, int(seed))))
        return 0
    columns = [
        "corpus",
        "rows",
        "seed",
        "labels",
        "method",
        "accuracy",
        "macro-F1",
        "fit s",
        "peak MiB",
        "chosen",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns), flush=True)
    runs = [
        (corpus, int(rows), int(seed), method)
        for corpus in args.corpora.split(",")
        for rows in args.sizes.split(",")
        for seed in args.seeds.split(",")
        for method in args.methods.split(",")
    ]
    results = []
    for corpus, rows, seed, method in runs:
        results.append(run_measurement(corpus, rows, method, args.timeout, seed))
        print(format_row(results[-1]), flush=True)
        if args.json_out:
            with args.json_out.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(results[-1]) + "\n")
    print("\n" + "\n".join(format_comparison(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

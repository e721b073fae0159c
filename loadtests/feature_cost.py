"""What each kind of features costs one prediction, in process, side by side.

Fits the plans the training may choose on the bench's 6 400 Debian descriptions (the sample
`make bench` trains on), then times `FastPredictor.predict_one` (the single-text path every
`/predict` of one text takes) and `top_k` on the bench's single-text bodies, the plans
interleaved round by round; prints the median microseconds of process CPU per text, each plan's
ratio to words + pairs, and the first round's (character features remember each word's
n-grams once seen, so the first pass over new words costs more). Also says which plan
`train_model` chooses for that sample, so what `make bench` serves.

    python -m loadtests.feature_cost [--rounds 7]
"""

from __future__ import annotations

import argparse
import functools
import random
import statistics
import time
from collections.abc import Callable

from algorithm.ml.training import FastPredictor, fit_model, train_model
from algorithm.ml.tuning import LINEARSVC_DEFAULTS, TrainingPlan
from loadtests import bench_data
from loadtests.corpus import sample_rows

PLANS = {
    "TfidfVectorizer() + LinearSVC()": LINEARSVC_DEFAULTS,
    "words + pairs": TrainingPlan(2, 1, "liblinear", 1.0, None),
    "words + pairs + characters": TrainingPlan(2, 1, "liblinear", 1.0, None, characters=True),
}


def cpu_microseconds_per_text(predict: Callable[[str], object], texts: list[str]) -> float:
    started = time.process_time()
    for text in texts:
        predict(text)
    return (time.process_time() - started) / len(texts) * 1e6


def top_k(fast: FastPredictor, text: str) -> object:
    return fast.top_k([text], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    corpus = bench_data.load_corpus()
    texts, labels = zip(*sample_rows(corpus, bench_data.TRAIN_ROWS, seed=1), strict=True)
    asked = [text for text, _ in random.Random(4).sample(corpus, bench_data.SINGLE_BODIES)]
    chosen = train_model(list(texts), list(labels), seed=1)[1]["training"]
    print("train_model chooses:", {k: v for k, v in chosen.items() if k != "validation"})
    predictors = {
        name: FastPredictor(fit_model(list(texts), list(labels), plan=plan))
        for name, plan in PLANS.items()
    }
    one: dict[str, list[float]] = {name: [] for name in PLANS}
    ranked: dict[str, list[float]] = {name: [] for name in PLANS}
    for _ in range(args.rounds):
        for name, fast in predictors.items():
            one[name].append(cpu_microseconds_per_text(fast.predict_one, asked))
            top_3 = functools.partial(top_k, fast)
            ranked[name].append(cpu_microseconds_per_text(top_3, asked))
    reference = statistics.median(one["words + pairs"])
    print(
        "| features | features in the model | predict_one µs/text | ratio "
        "| first round (cold) | top_k=3 µs/text |"
    )
    print("|---|---|---|---|---|---|")
    for name, fast in predictors.items():
        single = statistics.median(one[name])
        size = fast.model.classifier.coef_.shape[1]
        print(
            f"| {name} | {size:,} | {single:.1f} | {single / reference:.2f} | "
            f"{one[name][0]:.1f} | {statistics.median(ranked[name]):.1f} |"
        )


if __name__ == "__main__":
    main()

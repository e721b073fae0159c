"""What the model costs per text at each batch size, on the bench's model, in process.

Trains the model `make bench` serves (6 400 Debian descriptions, `bench_data.train`), then
labels the bench's kind of bodies (descriptions drawn from the whole corpus) with
`FastPredictor.predict_many` in batches of 1, 2, 4, ... texts, as the micro-batcher calls it,
the sizes interleaved round by round; prints the median microseconds of process CPU per text.
Run it from two checkouts (PYTHONPATH) to compare them.

    python -m loadtests.batch_cost [--rounds 7] [--size 1 --size 8 ...]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from algorithm.ml.predictor import FastPredictor
from loadtests import bench_data

SIZES = (1, 2, 4, 8, 16, 32, 64)
TEXTS = 2_048


def cpu_microseconds_per_text(predictor: FastPredictor, texts: list[str], size: int) -> float:
    batches = [texts[start : start + size] for start in range(0, len(texts) - size + 1, size)]
    started = time.process_time()
    for batch in batches:
        predictor.predict_many(batch)
    return (time.process_time() - started) / (len(batches) * size) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--size", type=int, action="append", help=f"default: {SIZES}")
    args = parser.parse_args()
    sizes = args.size or SIZES
    corpus = bench_data.load_corpus()
    model, _ = bench_data.train(corpus, seed=1)
    predictor = FastPredictor(model)
    texts = [text for text, _ in random.Random(4).sample(corpus, TEXTS)]
    for size in sizes:  # warm: character features remember words once seen
        cpu_microseconds_per_text(predictor, texts, size)
    timings: dict[int, list[float]] = {size: [] for size in sizes}
    for round_no in range(args.rounds):
        for size in sizes if round_no % 2 == 0 else reversed(sizes):
            timings[size].append(cpu_microseconds_per_text(predictor, texts, size))
    print(f"{model.vectorizer!r}, {len(model.labels)} labels; us of CPU per text, median:")
    for size, values in timings.items():
        runs = ", ".join(f"{value:.1f}" for value in values)
        print(f"  {size:4d} texts per call {statistics.median(values):6.1f}   runs: {runs}")


if __name__ == "__main__":
    main()

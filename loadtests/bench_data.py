"""The data `make bench` serves: a model trained on Debian package descriptions, and bodies.

The model is trained on 6 400 descriptions (as in the spec's measurements) and published with
`publish_model_version`; the request bodies are descriptions drawn from the whole corpus (about
one in ten was also a training row), so the server sees mostly unseen texts.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from algorithm.artifacts import publish_model_version
from algorithm.ml import TrainedModel, train_model
from loadtests.corpus import CorpusUnavailableError, load_debian_corpus, sample_rows

TRAIN_ROWS = 6_400
BATCH_TEXTS = 1_000


@dataclass(frozen=True)
class BenchData:
    single_bodies: Path
    batch_bodies: Path
    single_lines: list[bytes]
    labels: int


def load_corpus() -> list[tuple[str, str]]:
    """The Debian descriptions; runs `apt-get update` once when apt has no package lists."""
    try:
        return load_debian_corpus()
    except CorpusUnavailableError:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            raise
        print("apt has no package lists: running apt-get update", flush=True)
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        return load_debian_corpus()


def train(corpus: list[tuple[str, str]], *, seed: int) -> tuple[TrainedModel, dict[str, object]]:
    """Train on TRAIN_ROWS rows sampled from the corpus with `seed`."""
    rows = list(sample_rows(corpus, TRAIN_ROWS, seed=seed))
    model, metrics = train_model([t for t, _ in rows], [label for _, label in rows], seed=seed)
    return model, metrics


def publish(model_root: Path, model: TrainedModel, metrics: dict[str, object], seed: int) -> str:
    """Publish a bench model; return its version id."""
    manifest = publish_model_version(
        model_root,
        model,
        metrics=dict(metrics),
        rows=TRAIN_ROWS,
        fingerprint={"source": "debian package descriptions", "sample_seed": seed},
    )
    return str(manifest["version"])


def write_bodies(work_dir: Path, corpus: list[tuple[str, str]]) -> BenchData:
    """Request bodies for wrk: 2 000 single texts, 16 batches of 1 000, one JSON per line."""
    rng = random.Random(3)
    single = [json.dumps({"text": text}).encode() for text, _ in rng.sample(corpus, 2_000)]
    batches = [
        json.dumps({"texts": [text for text, _ in rng.sample(corpus, BATCH_TEXTS)]}).encode()
        for _ in range(16)
    ]
    single_path, batch_path = work_dir / "single.jsonl", work_dir / "batch.jsonl"
    single_path.write_bytes(b"\n".join(single) + b"\n")
    batch_path.write_bytes(b"\n".join(batches) + b"\n")
    return BenchData(single_path, batch_path, single, len({label for _, label in corpus}))


def load_average() -> float:
    """The 1-minute load average: how busy the machine was apart from the bench."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine_description() -> str:
    """Cores, CPU model, memory, kernel and Python, for the benchmark record."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.partition(":")[2].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return (
        f"{len(os.sched_getaffinity(0))} cores (nproc), {cpu}, {mem_kib / 2**20:.1f} GiB "
        f"memory, Linux {platform.release()}, Python {platform.python_version()}"
    )

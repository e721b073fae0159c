"""What a model costs this process in memory, and giving that memory back.

A model's size is the growth of the process's resident memory (RSS) across its load, measured
after a garbage collection on both sides, floored by the size of its files: what the operating
system actually charges the process for it (the unpickled vocabulary dict, the weight matrices
and the predictor's own copies alike), which no `sys.getsizeof` walk over sklearn objects adds up
honestly. Loads are measured one at a time (`MEASURING`), so two loads never share their growth;
the floor covers a load that reused pages an unloaded model left to the allocator. Unloading
drops the references, collects, and asks glibc to hand free pages back (`malloc_trim(0)`):
without it, freed small objects stay in the process's arenas and RSS never shrinks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
MEASURING = threading.Lock()  # one measured load at a time in this process
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATM = Path("/proc/self/statm")


def rss_bytes() -> int:
    """This process's resident memory now (0 where /proc is not available)."""
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim = libc.malloc_trim if libc is not None else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def release_memory() -> None:
    """Collect garbage and return the allocator's free pages to the operating system."""
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def files_bytes(directory: Path) -> int:
    """The size of the files directly in `directory` (a version's pickles and manifest)."""
    try:
        return sum(entry.stat().st_size for entry in directory.iterdir() if entry.is_file())
    except OSError:
        return 0


def measured(load: Callable[[], T], *, floor: Callable[[T], int]) -> tuple[T, int]:
    """`load()` and what it added to this process's RSS, at least `floor(result)` bytes."""
    with MEASURING:
        release_memory()
        before = rss_bytes()
        result = load()
        release_memory()  # what the load used only while it ran (read buffers) goes back first
        grown = rss_bytes() - before
    return result, max(grown, floor(result))

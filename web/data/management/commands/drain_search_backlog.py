"""`python -m django drain_search_backlog`: index every row an import left in the search backlog.

The web process drains after each import by itself; this is for an operator after a crash
mid-drain (the rows are found by searches meanwhile, only more slowly) and for the benchmark.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand

from web.data.search_backlog import drain_search_backlog


class Command(BaseCommand):
    help = "Put every row waiting in the search backlog into the trigram index."

    def handle(self, *args: Any, **options: Any) -> None:
        began = time.perf_counter()
        flipped = drain_search_backlog()
        seconds = time.perf_counter() - began
        self.stdout.write(f"{flipped} rows indexed in {seconds:.1f} s")

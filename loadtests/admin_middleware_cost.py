"""What the admin's middlewares cost a request outside /admin/: scoped, absent, or everywhere.

Runs Django's async test client in-process against /health/live (a view that does nearly
nothing, so the middleware's share shows), the three MIDDLEWARE lists interleaved, and prints
the median time per request of each. `python -m loadtests.admin_middleware_cost`.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

REQUESTS = 3000
ROUNDS = 5


async def time_requests(middleware: list[str]) -> float:
    """Microseconds per GET /health/live through the whole Django handler."""
    from django.test import AsyncClient, override_settings

    with override_settings(MIDDLEWARE=middleware):
        client = AsyncClient()
        await client.get("/health/live")
        started = time.perf_counter()
        for _ in range(REQUESTS):
            await client.get("/health/live")
        return (time.perf_counter() - started) / REQUESTS * 1e6


def main() -> None:
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-secret-key-not-for-production-" + "b" * 20)
    os.environ["DJANGO_SETTINGS_MODULE"] = "web.settings"
    import django

    django.setup()
    from loadtests.servers import web_admin_off, web_admin_unscoped
    from web import settings

    configs = {
        "scoped to /admin/ (web.settings)": settings.MIDDLEWARE,
        "no admin middleware": web_admin_off.MIDDLEWARE,
        "admin middlewares on every path": web_admin_unscoped.MIDDLEWARE,
    }
    timings: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(ROUNDS):
        for name, middleware in configs.items():
            timings[name].append(asyncio.run(time_requests(middleware)))
    for name, values in timings.items():
        print(
            f"{name}: median {statistics.median(values):.0f} us per request "
            f"(runs: {', '.join(f'{v:.0f}' for v in values)})"
        )


if __name__ == "__main__":
    main()

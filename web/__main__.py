"""`python -m web`: serve the web API with the configured server pool.

`python -m web COMMAND ...` runs a Django management command instead (createtoken, listtokens,
revoketoken, migrate, ...), with web's settings.
"""

import os
import sys
from pathlib import Path

from pydantic import ValidationError

from core.settings import (
    EMBEDDED_PASSWORD_FILES,
    KEPT_SECRET_FILES,
    CommonSettings,
    url_with_password,
)


def use_make_run_secrets() -> None:
    """Fill DJANGO_SECRET_KEY and ALGORITHM_TOKEN, where unset, from the files `make run` keeps,
    and DATABASE_URL / REDIS_URL, where unset, with the embedded servers' passwords.

    Why: the README's commands (`.venv/bin/python -m web createtoken ...`) are typed in the
    checkout beside a running `make run`, with the same defaults, but only `make run` hands the
    secrets it generated to what it starts; without them web's settings refuse to load. A
    variable that is set always wins, and a missing or unreadable file leaves it unset (then the
    settings say what is missing). Management commands only: the server never picks secrets up
    from files, so a deployment that forgot to set them still refuses to start. Nothing here
    prints a value.
    """
    try:
        settings = CommonSettings()
    except ValidationError:
        return  # web's own settings report the bad variable
    for variable, name in KEPT_SECRET_FILES.items():
        value = _unset_and_kept(variable, settings.var_dir / name)
        if value:
            os.environ[variable] = value
    # Unset, the URLs are the embedded servers' defaults, which `make run` started with these.
    for variable, name in EMBEDDED_PASSWORD_FILES.items():
        password = _unset_and_kept(variable, settings.var_dir / name)
        if password:
            os.environ[variable] = url_with_password(getattr(settings, variable.lower()), password)


def _unset_and_kept(variable: str, path: Path) -> str:
    """What `path` holds when `variable` is unset and the file readable; else ""."""
    if os.environ.get(variable, "").strip():
        return ""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def main() -> int:
    if len(sys.argv) > 1:
        from django.core.management import execute_from_command_line

        use_make_run_secrets()
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
        execute_from_command_line(["python -m web", *sys.argv[1:]])
        return 0

    from core.pool import serve_pool
    from web.config import get_settings

    settings = get_settings()
    return serve_pool(
        "web.asgi:application",
        host=settings.web_host,
        port=settings.web_port,
        workers=settings.web_workers,
        server=settings.web_server,
    )


if __name__ == "__main__":
    sys.exit(main())

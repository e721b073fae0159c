"""web's management commands on a bench's scratch database (migrate, createtoken, ...).

Every bench that needs web's tables runs the same `python -m django <command>` with web's
settings; web refuses to start without a secret key and an algorithm token, which a scratch
database never needs for real, so placeholders are filled in unless the caller sets them.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_web_command(env: Mapping[str, str], *command: str) -> str:
    """Run `python -m django <command>` with web's settings in `env`; return what it printed."""
    web_env = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "ALGORITHM_TOKEN": secrets.token_urlsafe(32),
        **env,
        "DJANGO_SETTINGS_MODULE": "web.settings",
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", *command],
        env=web_env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


def prepare_web_database(env: Mapping[str, str], *, token: str, name: str, role: str) -> None:
    """Migrate the database `env` names and create a token of `role` whose secret is `token`."""
    run_web_command(env, "migrate", "--no-input", "-v", "0")
    run_web_command(
        {**env, "BENCH_TOKEN_SECRET": token},
        "createtoken",
        "--name",
        name,
        "--role",
        role,
        "--from-env",
        "BENCH_TOKEN_SECRET",
    )


SEED_ROWS = """
import json, os
from web.data.models import Data
rows = json.loads(open(os.environ["BENCH_SEED_ROWS"]).read())
created = Data.objects.bulk_create(Data(text=text, label=label) for text, label in rows)
print(created[0].pk)
"""


def seed_data_rows(env: Mapping[str, str], rows: list[tuple[str, str]], work_dir: Path) -> int:
    """Store `rows` (text, label) in the data API's table of the database `env` names.

    Returns the id of the first one.
    """
    path = work_dir / "seed-rows.json"
    path.write_text(json.dumps(rows))
    printed = run_web_command({**env, "BENCH_SEED_ROWS": str(path)}, "shell", "-c", SEED_ROWS)
    return int(printed.split()[-1])

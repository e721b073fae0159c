"""The session's embedded PostgreSQL and Redis (started as `make run` starts them) let nobody in
without the generated password, and Redis refuses CONFIG whatever the password."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.settings import EMBEDDED_PASSWORD_FILES


@pytest.fixture
def embedded(state_dir: Path) -> Path:
    """VAR_DIR of the session; skips when the environment named servers of its own."""
    if not (state_dir / "postgres" / "PG_VERSION").exists():
        pytest.skip("DATABASE_URL / REDIS_URL name servers that the session did not start")
    return Path(os.environ["VAR_DIR"])


def test_password_files_are_the_owners_alone(embedded: Path) -> None:
    for variable, name in EMBEDDED_PASSWORD_FILES.items():
        kept = embedded / name
        assert kept.stat().st_mode & 0o777 == 0o600
        assert urlsplit(os.environ[variable]).password == kept.read_text().strip()


def test_postgres_refuses_a_session_without_the_password(embedded: Path, state_dir: Path) -> None:
    url = urlsplit(os.environ["DATABASE_URL"])
    tcp = f"host=127.0.0.1 port={url.port} user=postgres dbname=postgres"
    socket = f"host={state_dir / 'postgres'} port={url.port} user=postgres dbname=postgres"
    for conninfo in (tcp, socket, f"{tcp} password=wrong"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(conninfo, connect_timeout=5).close()
    with psycopg.connect(f"{tcp} password={url.password}", connect_timeout=5) as session:
        assert session.execute("SELECT 1").fetchone() == (1,)


def test_redis_is_valkey_9_behind_a_password_without_config(embedded: Path) -> None:
    url = urlsplit(os.environ["REDIS_URL"])
    no_retry = Retry(NoBackoff(), retries=0)  # a refused login is final, not a network blip
    anonymous = redis.Redis(port=url.port or 6379, socket_timeout=5, retry=no_retry)
    with anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.set("written", "by anyone")
    with redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=5) as client:
        major = int(client.info("server")["valkey_version"].split(".")[0])
        assert major >= 9
        for command in (("CONFIG", "SET", "dir", "/tmp"), ("CONFIG", "GET", "dir")):
            with pytest.raises(redis.ResponseError, match="no permissions"):
                client.execute_command(*command)
        with pytest.raises(redis.ResponseError, match="no permissions"):
            client.execute_command("ACL", "SETUSER", "default", "+config")

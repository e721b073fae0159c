"""The registry-to-serving protocol against a real Redis: desired state, reports, waiting."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from core import serving_protocol
from core.serving_protocol import Desired, ReplicaReport, ShadowCounts


@pytest.fixture
def client(redis_db_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_db_url, decode_responses=True) as connection:
        yield connection


def test_announce_sets_the_key_and_publishes_the_same_json(client: redis.Redis) -> None:
    subscriber = client.pubsub()
    subscriber.subscribe(serving_protocol.CHANGED_CHANNEL)
    confirmation = subscriber.get_message(timeout=2)
    assert confirmation is not None and confirmation["type"] == "subscribe"
    desired = Desired(champion="v2", challenger="v3", seq=7)

    serving_protocol.announce(client, desired)

    message = subscriber.get_message(timeout=2)
    subscriber.close()
    assert message is not None and message["channel"] == "textclf:registry:changed"
    stored = client.get("textclf:registry:desired")
    assert isinstance(stored, str) and stored == message["data"]
    assert client.ttl("textclf:registry:desired") == -1  # the desired state never expires
    body = json.loads(stored)
    assert body["champion"] == "v2" and body["challenger"] == "v3" and body["seq"] == 7
    assert body["moved_at"].endswith("+00:00")
    assert serving_protocol.read_desired(client) == desired


def test_read_desired_is_none_when_absent_or_malformed(client: redis.Redis) -> None:
    assert serving_protocol.read_desired(client) is None
    client.set(serving_protocol.DESIRED_KEY, "{not json")
    assert serving_protocol.read_desired(client) is None
    client.set(serving_protocol.DESIRED_KEY, json.dumps({"champion": "v1"}))  # no seq
    assert serving_protocol.read_desired(client) is None


def test_a_report_is_readable_and_expires(client: redis.Redis) -> None:
    report = ReplicaReport(
        replica="host-a:12",
        version="v1",
        error="sha256 mismatch",
        error_version="v2",
        shadow=ShadowCounts(compared=10, agreed=9),
    )
    serving_protocol.report(client, report)

    assert serving_protocol.read_reports(client) == [report]
    ttl = client.ttl("textclf:serving:host-a:12")
    assert 0 < ttl <= serving_protocol.REPORT_TTL_SECONDS
    body = json.loads(client.get("textclf:serving:host-a:12") or "")
    assert body["shadow"] == {"compared": 10, "agreed": 9}
    assert body["error_version"] == "v2"


def test_read_reports_skips_malformed_entries(client: redis.Redis) -> None:
    serving_protocol.report(client, ReplicaReport(replica="a:1", version="v1"))
    client.set("textclf:serving:b:2", "garbage", ex=15)
    assert [found.replica for found in serving_protocol.read_reports(client)] == ["a:1"]


def test_replica_name_is_host_and_pid() -> None:
    host, pid = serving_protocol.replica_name().rsplit(":", 1)
    assert host and int(pid) > 0


def test_wait_until_served_is_true_once_every_replica_serves(client: redis.Redis) -> None:
    serving_protocol.report(client, ReplicaReport(replica="a:1", version="v2"))
    serving_protocol.report(client, ReplicaReport(replica="b:2", version="v1"))
    assert serving_protocol.wait_until_served(client, "v2", timeout=0.2) is False

    catch_up = threading.Timer(
        0.3, serving_protocol.report, (client, ReplicaReport(replica="b:2", version="v2"))
    )
    catch_up.start()
    try:
        assert serving_protocol.wait_until_served(client, "v2", timeout=5) is True
    finally:
        catch_up.join()


def test_wait_until_served_with_no_live_replica_does_not_wait(client: redis.Redis) -> None:
    started = time.monotonic()
    assert serving_protocol.wait_until_served(client, "v9", timeout=5) is True
    assert time.monotonic() - started < 1


def test_announce_if_behind_fills_an_empty_redis_and_never_goes_back(client: redis.Redis) -> None:
    assert not serving_protocol.announce_if_behind(client, Desired(champion=None, seq=0))
    assert serving_protocol.read_desired(client) is None  # nothing to say: replicas follow current

    registry = Desired(champion="v1", seq=3)
    assert serving_protocol.announce_if_behind(client, registry)  # Redis restarted empty
    assert not serving_protocol.announce_if_behind(client, registry)  # already said: no message
    newer = Desired(champion="v2", seq=5)
    serving_protocol.announce(client, newer)  # a move announced after our read of the registry
    assert not serving_protocol.announce_if_behind(client, registry)
    assert serving_protocol.read_desired(client) == newer

    moved_while_down = Desired(champion="v1", challenger="v3", seq=8)
    assert serving_protocol.announce_if_behind(client, moved_while_down)
    assert serving_protocol.read_desired(client) == moved_while_down

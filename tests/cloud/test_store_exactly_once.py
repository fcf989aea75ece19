"""Exactly once at the store level: a consumer killed with SIGKILL between a feed and its commit,
or right after a commit, and started again from the stored positions, leaves the same alerts
(counts included) and hourly aggregates as a run never interrupted; on both backends. Two
writers at once on PostgreSQL, each with its partitions, lose nothing."""
import pytest

from host_sim.cloud.store import open_store

import store_history
from store_history import Child, alert_rows, expected_alerts


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    return store_history.build(tmp_path_factory.mktemp("history"))


def _hourly(dsn):
    store = open_store(dsn)
    try:
        rows = {device: store.hourly(device) for device in store_history.PARTITION}
        devices = {device: store.device_row(device) for device in store_history.PARTITION}
        return rows, {d: (r["messages"], r["skipped"], r["partition"], r["last_time"])
                      for d, r in devices.items()}, store.positions("hub", [0, 1])
    finally:
        store.close()


def _alerts(dsn):
    store = open_store(dsn)
    try:
        return alert_rows(store)
    finally:
        store.close()


@pytest.fixture(scope="module")
def uninterrupted(history, tmp_path_factory):
    """The store of one consumer that ran through the history without a break."""
    dsn = str(tmp_path_factory.mktemp("whole") / "whole.db")
    Child(dsn, *history).finish()
    return _alerts(dsn), _hourly(dsn)


def test_the_uninterrupted_store_holds_the_engines_alerts(history, uninterrupted):
    alerts, (hourly, devices, positions) = uninterrupted
    assert alerts == expected_alerts(*history)
    rules = {row[1] for row in alerts}
    assert {"brute-force", "new-process", "silence", "sbom-change"} <= rules
    lines = store_history.read(history[0])
    assert positions == {p: max(r[1] for r in lines if r[0] == p) + 1 for p in (0, 1)}
    for device in store_history.PARTITION:
        readable = sum(1 for r in lines if r[2] == device) - devices[device][1]
        assert sum(h[1] for h in hourly[device]) == readable == devices[device][0]
    assert devices["broken"][1] == 2 and hourly["broken"] == []


@pytest.mark.parametrize("stop_after,commit_every", [
    (40, 7),    # killed with 5 messages fed and not committed
    (42, 7),    # killed right after a commit
    (3, 50),    # killed before any commit
])
def test_killed_and_resumed_equals_uninterrupted(store_dsn, history, uninterrupted, stop_after,
                                                 commit_every):
    first = Child(store_dsn, *history, commit_every=commit_every, stop_after=stop_after)
    try:
        first.wait_line("fed ")
    finally:
        first.kill()
    Child(store_dsn, *history, commit_every=commit_every).finish()
    assert _alerts(store_dsn) == uninterrupted[0]
    assert _hourly(store_dsn) == uninterrupted[1]


def test_killed_twice_and_a_third_run_adds_nothing(store_dsn, history, uninterrupted):
    for stop_after in (25, 61):
        child = Child(store_dsn, *history, commit_every=4, stop_after=stop_after)
        try:
            child.wait_line("fed ")
        finally:
            child.kill()
    Child(store_dsn, *history, commit_every=4).finish()
    Child(store_dsn, *history, commit_every=4).finish()   # everything is stored: a no-op
    assert _alerts(store_dsn) == uninterrupted[0]
    assert _hourly(store_dsn) == uninterrupted[1]


def test_two_writers_on_postgresql_lose_nothing(postgres_server, history, uninterrupted):
    dsn = postgres_server.create_database("two_writers")
    writers = [Child(dsn, *history, commit_every=3, partitions=(p,)) for p in (0, 1)]
    for writer in writers:
        writer.finish()
    assert _alerts(dsn) == uninterrupted[0]
    assert _hourly(dsn) == uninterrupted[1]

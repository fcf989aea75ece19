"""The cloud store itself (host_sim/cloud/store): versioned migrations, refusals in one line,
the SQLite file's mode, hostile text, and a password that never shows."""
import os
import sqlite3
import stat

import psycopg
import pytest

from host_sim.cloud.alerts.engine import Alert
from host_sim.cloud.store import StoreError, open_store
from host_sim.cloud.store.base import Batch
from host_sim.cloud.store.postgres import open_postgres
from host_sim.cloud.store.schema import LATEST
from host_sim.cloud.store.sqlite import open_sqlite

from pg_server import PASSWORD

RULE = {"id": "brute-force", "severity": "High"}


def _open_old(dsn, version):
    return (open_postgres if dsn.startswith("postgresql") else open_sqlite)(dsn, version)


def _sql(dsn, statements):
    """Runs STATEMENTS on the store's database directly, not through the store."""
    if dsn.startswith("postgresql"):
        with psycopg.connect(dsn, autocommit=True) as db:
            return [db.execute(s).fetchall() if s.startswith("SELECT") else db.execute(s)
                    for s in statements]
    db = sqlite3.connect(dsn)
    try:
        out = [db.execute(s).fetchall() for s in statements]
        db.commit()
        return out
    finally:
        db.close()


def test_a_version_1_store_is_migrated_keeping_its_rows(store_dsn):
    old = _open_old(store_dsn, 1)
    assert old.version() == 1
    old.close()
    _sql(store_dsn, ["INSERT INTO alerts (id, device, rule, severity, alert_key, title, what_to_do,"
                     " first_time, last_time, count, evidence) VALUES ('x', 'dev', 'brute-force',"
                     " 'High', 'k', 't', 'w', 1.0, 2.0, 3, '[]')"])
    assert LATEST >= 2
    store = open_store(store_dsn)
    try:
        assert store.version() == LATEST
        [row] = store.alerts()
        assert (row["device"], row["count"], row["kind"], row["technique"], row["incident"]) == (
            "dev", 3, "alert", None, None)
        assert _sql(store_dsn, ["SELECT COUNT(*) FROM incidents",
                                "SELECT COUNT(*) FROM recommendations"]) == [[(0,)], [(0,)]]
    finally:
        store.close()


def test_a_store_newer_than_the_code_is_refused_in_one_line(store_dsn):
    open_store(store_dsn).close()
    _sql(store_dsn, ["UPDATE schema_version SET version = %d" % (LATEST + 1)])
    with pytest.raises(StoreError) as refused:
        open_store(store_dsn)
    text = str(refused.value)
    assert "schema version %d, newer than this microagent knows (%d)" % (LATEST + 1, LATEST) in text
    assert "\n" not in text and PASSWORD not in text and "s3cret" not in text


def test_a_database_of_something_else_is_refused(store_dsn):
    _sql(store_dsn, ["CREATE TABLE customers (name TEXT)"])
    with pytest.raises(StoreError, match="has tables but is not a microagent store"):
        open_store(store_dsn)


def test_sqlite_file_is_0600_and_garbage_is_one_line(tmp_path):
    path = tmp_path / "cloud.db"
    open_store("sqlite://" + str(path)).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 200)
    with pytest.raises(StoreError) as refused:
        open_store(str(garbage))
    assert str(refused.value).startswith("store %s: " % garbage) and "\n" not in str(refused.value)
    with pytest.raises(StoreError, match="expected sqlite:///absolute/path"):
        open_store("sqlite://relative")
    with pytest.raises(StoreError, match="unknown scheme"):
        open_store("mysql://user:pw@host/db")


def test_errors_never_show_the_password(postgres_server):
    wrong = postgres_server.dsn(password="not-" + PASSWORD)
    with pytest.raises(StoreError) as refused:
        open_store(wrong)
    text = str(refused.value)
    assert "cannot connect" in text and "***" in text and "\n" not in text
    assert "not-" not in text and "s3cret" not in text
    with pytest.raises(StoreError) as missing:
        open_store(postgres_server.dsn("no_such_database"))
    text = str(missing.value)
    assert "no_such_database" in text and "s3cret" not in text and "%20" not in text


def test_hostile_text_is_stored_on_both_backends(store_dsn):
    """NUL (PostgreSQL refuses it in text) and a lone surrogate (not UTF-8) in a device id, an
    alert key and its evidence: stored, readable, never a failed commit."""
    store = open_store(store_dsn)
    try:
        device = "dev\x00<script>\ud800"
        alert = Alert(device, RULE, "key\x00\udfff", 1.0, 5)
        alert.add(2.0, {"user": "root\x00", "odd": "\ud800"})
        alert.title = "title \x00"
        batch = Batch()
        batch.alerts.append(alert)
        batch.devices.append((device, "hub", 0, 2.0, 3.0, 1, 0, None))
        batch.hourly.append((device, 0, 1, 1, 5, 0, 1))
        batch.tags[device] = ["a\x00b"]
        store.write(batch)
        [row] = store.alerts()
        assert row["device"] == "dev\ufffd<script>?" and row["key"] == "key\ufffd?"
        assert row["evidence"] == [{"user": "root\x00", "odd": "\ud800"}]
        assert store.device_row(device)["tags"] == ["a\ufffdb"]
        assert [d["device"] for d in store.devices_page()] == ["dev\ufffd<script>?"]
    finally:
        store.close()


def test_device_filter_is_a_case_sensitive_glob_without_like_wildcards(store_dsn):
    store = open_store(store_dsn)
    try:
        batch = Batch()
        for i, device in enumerate(["gw-1", "GW-2", "gw_3", "gw%4", "sensor-1"]):
            alert = Alert(device, RULE, "k", float(i), 5)
            alert.add(float(i), {})
            batch.alerts.append(alert)
        store.write(batch)

        def devices(pattern):
            return sorted(a["device"] for a in store.alerts(device=pattern))
        assert devices("gw-*") == ["gw-1"]
        assert devices("gw?*") == ["gw%4", "gw-1", "gw_3"]
        assert devices("gw_*") == ["gw_3"]
        assert devices("gw%*") == ["gw%4"]
        assert devices("*-1") == ["gw-1", "sensor-1"]
    finally:
        store.close()


def test_a_partition_taken_over_fences_the_old_consumer(store_dsn, tmp_path):
    """Two consumers believe they own partition 0 (the old one has not heard of the rebalance):
    the second commit finds the position moved and writes nothing."""
    from alert_helpers import quiet, replay
    from host_sim.cloud.alerts.rules import load_rules
    from host_sim.cloud.alerts.sources import StoredMessage
    from host_sim.cloud.ingest import Ingest
    from host_sim.cloud.store.base import PositionMoved
    bodies = replay(quiet(hours=2), tmp_path)
    old, new = (Ingest(open_store(store_dsn), load_rules(None)) for _ in range(2))
    try:
        assert old.positions("hub", [0]) == new.positions("hub", [0]) == {0: None}
        for offset, body in enumerate(bodies[:5]):
            new.feed("hub", 0, offset, StoredMessage(offset, "dev", 0.0, {}, body.encode()))
        new.commit()
        for offset, body in enumerate(bodies[:3]):
            old.feed("hub", 0, offset, StoredMessage(offset, "dev", 0.0, {}, body.encode()))
        with pytest.raises(PositionMoved, match="position of hub partition 0 moved"):
            old.commit()
        assert new.store.device_row("dev")["messages"] == 5
        assert sum(h[1] for h in new.store.hourly("dev")) == 5
        old.discard()
        assert old.positions("hub", [0]) == {0: 5}
    finally:
        old.close()
        new.close()


def test_unusable_messages_are_logged_with_their_place_and_skipped(store_dsn):
    """Not a security message and a record without a device: each named with source, partition
    and offset (and device), its position advanced; a value the rules cannot key on (a list as
    a command line) drops its item, not the message; the good message after them is evaluated."""
    import json as _json
    from host_sim.cloud.alerts.rules import load_rules
    from host_sim.cloud.alerts.sources import StoredMessage
    from host_sim.cloud.ingest import Ingest

    def body(commandline):
        return _json.dumps({"AgentId": "a", "Events": [{
            "Name": "ProcessCreate", "Category": "Triggered", "TimestampUTC": "2026-01-01T00:00:00.000Z",
            "Payload": [{"commandline": commandline, "user_id": 0, "hit_count": 1}]}]}).encode()
    lines = []
    ingest = Ingest(open_store(store_dsn), load_rules(None), on_skip=lines.append)
    try:
        ingest.feed("k", 3, 10, StoredMessage(10, "dev", 0.0, {}, b"not json"))
        ingest.feed("k", 3, 11, StoredMessage(11, "dev", 0.0, {}, body(["/bin/sh", "-c"])))
        ingest.feed("k", 3, 12, StoredMessage(12, None, 0.0, {}, body("/bin/true")))
        ingest.skip("k", 3, 13, "no device id header")
        ingest.feed("k", 3, 14, StoredMessage(14, "dev", 0.0, {}, body("/bin/true")))
        ingest.commit()
        assert len(lines) == 3 and all("\n" not in line for line in lines)
        assert lines[0].startswith("skipped k partition 3 offset 10 of dev: ")
        assert lines[1].startswith("skipped k partition 3 offset 12: no device id")
        assert lines[2] == "skipped k partition 3 offset 13: no device id header"
        assert ingest.store.positions("k", [3]) == {3: 15}
        row = ingest.store.device_row("dev")
        assert (row["messages"], row["skipped"]) == (2, 1)
        assert sum(h[1] for h in ingest.store.hourly("dev")) == 2
        [malformed] = ingest.store.alerts(rule="malformed-messages")
        assert malformed["count"] == 2
    finally:
        ingest.close()


def test_hourly_rows_are_filed_by_the_hubs_arrival_not_the_devices_dates(store_dsn):
    """A device dating its messages 1970 and 9999 cannot spread its traffic over the fleet's
    hours: both land in the hour the hub received them, as IoT Hub meters."""
    import json as _json
    from host_sim.cloud.alerts.rules import load_rules
    from host_sim.cloud.alerts.sources import StoredMessage
    from host_sim.cloud.ingest import Ingest

    def body(stamp):
        return _json.dumps({"AgentId": "a", "Events": [{
            "Name": "Login", "Category": "Triggered", "TimestampUTC": stamp,
            "Payload": [{"user_name": "root", "result": "Success"}]}]}).encode()
    arrival = 1_767_225_600.0 + 3 * 3600 + 1234      # 2026-01-01T03:20:34Z
    ingest = Ingest(open_store(store_dsn), load_rules(None))
    try:
        for offset, stamp in enumerate(("1970-01-01T00:00:00.000Z", "9999-12-31T23:00:00.000Z",
                                        "2026-01-01T03:00:00.000Z")):
            ingest.feed("k", 0, offset, StoredMessage(offset, "dev", arrival + offset, {},
                                                      body(stamp)))
        ingest.commit()
        rows = ingest.store.hourly("dev")
        assert len(rows) == 1 and rows[0][1] == 3
        assert int(rows[0][0]) == 1_767_225_600 + 3 * 3600
    finally:
        ingest.close()

# A flood cannot hide an attack from the firmware engine (docs/spec.md section 4): whatever the
# order of a flood of 10x the cache size and an attack in one window, the attack's destinations
# reach the window's messages, as ConnectionCreate items or ConnectionOverflow rows, with the
# hits and bytes the trace gave them. The oracle is the generated trace (flood_scenarios).
import json

from flood_scenarios import (FLOODS, ORDERS, POOL, SCANNED, SHELL, T0, connection, flood, lines,
                             overflow_items, reported, summary_only_messages, totals, window)
from microagent.engine import build_engine
from microagent.overflow import ConnectionOverflow
from microagent.trace import Replay

CACHE = 64  # the ESP32 profile's
AGENT_ID = "00000000-0000-4000-8000-000000000001"


def replay(events, cache=CACHE, encoding="json", max_size=4096):
    messages = []
    bodies = []

    def sink(buffer, length):
        bodies.append(bytes(buffer[:length]))

    engine = build_engine(8, cache, 8, max_size, AGENT_ID, sink, lambda text: None, encoding)
    run = Replay(engine, 600000)
    n = 0
    for line in lines(events).splitlines():
        n += 1
        run.feed(line + "\n", "flood.jsonl:%d" % n)
    run.close_window()
    if encoding == "json":
        for body in bodies:
            messages.append(json.loads(body))
    return messages, bodies


def _check_attack_reported(events, messages):
    for key in (SHELL, POOL):
        found, scopes = reported(messages, key)
        assert found == totals(events, key), (key, found, totals(events, key))
        assert "address" not in scopes and "rest" not in scopes, scopes


def test_the_attack_survives_a_flood_in_every_order():
    for kind in FLOODS:
        for order in ORDERS:
            events = window(CACHE, order, kind)
            messages, _ = replay(events)
            _check_attack_reported(events, messages)
            rows = overflow_items(messages)
            assert 0 < len(rows) <= 17, (kind, order, len(rows))
            assert summary_only_messages(messages) <= 1


def test_overflow_totals_are_what_the_cache_dropped():
    # Drop-new keeps the first 64 distinct connections: the rest of the trace is the summary.
    events = window(CACHE, "before", "sweep")
    messages, _ = replay(events)
    kept = [0, 0]
    for message in messages:
        for event in message["Events"]:
            if event["Name"] == "ConnectionCreate":
                for item in event["Payload"]:
                    kept[0] += item["hit_count"]
                    kept[1] += item["bytes_in"]
    rows = overflow_items(messages)
    trace_hits = len([e for e in events if not e.get("continued")])
    assert sum(r["hit_count"] for r in rows) == trace_hits - kept[0]
    assert sum(r["bytes_in"] for r in rows) == sum(e["bytes_in"] for e in events) - kept[1]


def test_a_port_scan_collapses_into_one_address_row():
    messages, _ = replay(window(CACHE, "before", "portscan"))
    scanned = [r for r in overflow_items(messages) if r.get("remote_address") == SCANNED]
    assert len(scanned) == 1 and scanned[0]["scope"] == "address"
    assert "remote_port" not in scanned[0]
    # every scanned port the cache dropped is counted on that row
    assert scanned[0]["hit_count"] == 10 * CACHE - CACHE


def test_an_unflooded_window_has_no_summary():
    events = [connection(T0 + i, "198.51.100.%d" % i, 443, 40000 + i, 10, 20) for i in range(CACHE)]
    messages, _ = replay(events)
    assert overflow_items(messages) == []
    assert set(e["Name"] for m in messages for e in m["Events"]) == {"ConnectionCreate"}


def test_two_way_floods_beyond_the_rows_push_the_attack_into_the_rest():
    # The documented limit: more than 16 two-way destinations lost before the attack.
    events = [connection(T0 + i * 0.01, "198.18.0.%d" % i, 443, 20000 + i, 10, 10)
              for i in range(CACHE + 16)]
    events += [connection(T0 + 5, SHELL[0], SHELL[1], 45000, 5000, 300)]
    messages, _ = replay(events)
    found, scopes = reported(messages, SHELL)
    assert found == [0, 0, 0] and "rest" not in scopes
    rest = [r for r in overflow_items(messages) if r["scope"] == "rest"]
    assert rest == [{"timestamp": "2026-01-01T00:00:00.000Z", "hit_count": 1, "bytes_in": 5000,
                     "bytes_out": 300, "scope": "rest"}]


def test_the_summary_is_in_the_compact_encoding_too():
    _, bodies = replay(window(CACHE, "before", "sweep"), encoding="compact")
    # the generic event's name is written as text in the CBOR body
    assert any(b"ConnectionOverflow" in body for body in bodies)


def test_a_small_message_splits_the_summary_without_losing_rows():
    messages, _ = replay(window(CACHE, "before", "sweep"), max_size=1024)
    _check_attack_reported(window(CACHE, "before", "sweep"), messages)


def test_rows_saturate_and_lost_events_allocate_nothing():
    summary = ConnectionOverflow()
    summary.add(0xCB00, 0x7109, 4444, 0, 1, 0xFFFFFFF0, 5)
    summary.add(0xCB00, 0x7109, 4444, 0, 1, 0x100, 5)
    row = [None] * 7
    first = list(summary.rows(row))[0]
    assert first[4] == 0xFFFFFFFF and first[3] == 2 and first[6] == "destination"
    try:
        import gc
        alloc = gc.mem_alloc
    except (ImportError, AttributeError):
        return  # CPython: no allocation counter
    engine = build_engine(0, 4, 0, 4096, AGENT_ID, lambda b, n: None, lambda t: None, "json")
    for event in flood(T0, 4, "sweep"):
        engine.record_connection(0, 0, event["local_address"], event["local_port"],
                                 event["remote_address"], 80, 0, 0, 2)
    engine.record_connection(0, 0, "192.168.1.20", 45000, "203.0.113.9", 4444, 5, 5, 2)  # warns
    gc.collect()
    before = alloc()
    i = 0
    while i < 1000:  # a sweep and a port scan into the full cache and the full summary
        engine.record_connection_packed(0, 0, 0xC0A8, 0x0114, 30000, 0xC612, i, 80, 0, 0, 2)
        engine.record_connection_packed(0, 0, 0xC0A8, 0x0114, 30000, 0xC633, 0x64C8, i, 0, 0, 2)
        engine.record_connection(0, 0, "192.168.1.20", 45000, "203.0.113.9", 4444, 5, 5, 2)
        i += 1
    assert alloc() - before == 0
    assert engine.overflow.count == 16


def test_the_largest_summary_fits_one_4_kb_message():
    # Every row at its widest (the longest address, port and protocol, saturated counts) and a
    # rest row: the whole summary is one message, so it adds at most one to a window.
    sizes = []
    for encoding in ("json", "compact"):
        del sizes[:]
        engine = build_engine(1, 1, 1, 4096, AGENT_ID, lambda b, n: sizes.append(n),
                              lambda t: None, encoding)
        for i in range(17):
            engine.overflow.add(0xFFFF, 0xFF00 + i, 65535, 2, 0xFFFFFFFF, 0xFFFFFFFF,
                                0xFFFFFFFF)
        assert engine.overflow.count == 16
        engine.flush(0, 1000)
        assert len(sizes) == 1 and sizes[0] <= 4096, (encoding, sizes)

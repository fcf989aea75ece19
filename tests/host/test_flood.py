"""A flood cannot hide an attack (docs/spec.md section 4), on the host engine and on the firmware
engine in every runtime it replays on (CPython, the MicroPython unix port, micropython32, the
emulated Cortex-M3): one trace holds six 600 s windows, a sweep or a port scan of 10x the
default cache (2,560 distinct connections) before, during and after a reverse shell and a miner.
In every window, the attack's destinations are in the messages with the hits and bytes the trace
gave them (ConnectionCreate items plus ConnectionOverflow rows), and the summary costs at most
one message. The oracle is the generated trace; the crosscheck compares both engines' summaries
with the reference model's, row for row."""
import os
import sys
from datetime import datetime, timezone

import pytest

from host_sim import crosscheck as cc
from host_sim.replay import replay_firmware, replay_host
from microagent.decode import body_of_line, decode_body

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "firmware"))
from flood_scenarios import (FLOODS, ORDERS, POOL, SHELL, T0, lines,  # noqa: E402
                             overflow_items, reported, summary_only_messages, totals, window)

CACHE = 256
WINDOW_MS = 600000
SCENARIOS = [(kind, order) for kind in FLOODS for order in ORDERS]


@pytest.fixture(scope="module")
def flood_trace(tmp_path_factory):
    """Six windows, one per scenario; returns (path, [events of each window])."""
    windows = [window(CACHE, order, kind, start=T0 + 600 * i)
               for i, (kind, order) in enumerate(SCENARIOS)]
    path = tmp_path_factory.mktemp("flood") / "flood.jsonl"
    path.write_text("".join(lines(w) for w in windows))
    return str(path), windows


def _per_window(output):
    """Decoded messages grouped by window index (of their first item's timestamp)."""
    grouped = {}
    for line in output:
        message = decode_body(body_of_line(line))
        stamp = datetime.strptime(message["Events"][0]["Payload"][0]["timestamp"],
                                  "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        grouped.setdefault(int(stamp.timestamp() - T0) // 600, []).append(message)
    return grouped


def _check(output, windows):
    grouped = _per_window(output)
    assert sorted(grouped) == list(range(len(SCENARIOS)))
    for index, events in enumerate(windows):
        messages = grouped[index]
        for key in (SHELL, POOL):
            found, scopes = reported(messages, key)
            assert found == totals(events, key), (SCENARIOS[index], key, found)
            assert "address" not in scopes and "rest" not in scopes
        assert 0 < len(overflow_items(messages)) <= 17
        assert summary_only_messages(messages) <= 1, SCENARIOS[index]


@pytest.mark.parametrize("encoding", ["json", "compact"])
def test_host_engine(flood_trace, encoding):
    path, windows = flood_trace
    output = []
    replay_host(path, WINDOW_MS, CACHE, output.append, lambda text: None, encoding=encoding)
    _check(output, windows)


@pytest.mark.parametrize("runtime", ["cpython", "micropython", "micropython32",
                                     "qemu-cortex-m3"])
def test_firmware_engine(flood_trace, firmware_targets, runtime):
    path, windows = flood_trace
    output = []
    status = replay_firmware(path, WINDOW_MS, CACHE, output.append, lambda text: None,
                             # 64K before IPv6: the cache size sets the IPv6 cache's too
                             runtime=runtime, heap={"micropython": "1M",
                                                    "qemu-cortex-m3": "128K"}.get(runtime, "96K"))
    assert status == 0
    _check(output, windows)


@pytest.mark.parametrize("encoding", ["json", "compact"])
def test_both_engines_summaries_match_the_reference_model(flood_trace, encoding):
    report = cc.crosscheck(flood_trace[0], WINDOW_MS, CACHE, runtime="cpython",
                           encoding=encoding)
    assert report.ok, "\n".join(report.problems)
    assert sum(1 for row in report.rows if row[2] == "policy difference") == len(SCENARIOS)


def test_a_summary_that_differs_from_the_model_is_caught(flood_trace, monkeypatch):
    """The crosscheck really compares the summary: an engine that keeps one row fewer fails."""
    from microagent import overflow
    monkeypatch.setattr(overflow, "ROWS", 15)
    monkeypatch.setattr(overflow.ConnectionOverflow.__init__, "__defaults__", (15,))
    report = cc.crosscheck(flood_trace[0], WINDOW_MS, CACHE, runtime="cpython")
    assert any("ConnectionOverflow" in problem for problem in report.problems)

"""End to end: a flood of 10x the cache before, during and after a reverse shell and a miner,
replayed over TLS into the hub emulator by the host engine and by the firmware engine (inside
MicroPython): the attack's destinations are in the hub's stored messages with the hits and bytes
the trace gave them, and `microagent alerts --data` raises network-cache-flood for them."""
import json
import os
import subprocess
import sys

import pytest

from host_sim import schema
from host_sim.commands.replay import SENDING_HEAP
from microagent.decode import decode_body

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "firmware"))
from flood_scenarios import (FLOODS, ORDERS, POOL, SHELL, T0, lines, reported,  # noqa: E402
                             totals, window)

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
CACHE = 64
SCENARIOS = [(kind, order) for kind in FLOODS for order in ORDERS]


@pytest.mark.parametrize("engine", ["host", "firmware"])
def test_the_attack_reaches_the_hub_and_the_flood_raises_an_alert(hub, tmp_path, engine):
    # one flooded window an hour: the alerts of one window stay within a device-hour's bound
    windows = [window(CACHE, order, kind, start=T0 + 3600 * i)
               for i, (kind, order) in enumerate(SCENARIOS)]
    trace = tmp_path / "flood.jsonl"
    trace.write_text("".join(lines(w) for w in windows))
    args = [MICROAGENT, "replay", str(trace), "--engine", engine, "--window", "600",
            "--cache-size", str(CACHE), "--ca", hub.ca, "--port", str(hub.port),
            "--outbox", str(tmp_path / "outbox.db")]
    if engine == "firmware":
        args += ["--heap", SENDING_HEAP["micropython"]]
    env = dict(os.environ, MICROAGENT_CONNECTION_STRING=hub.connection_string)
    sent = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert sent.returncode == 0, sent.stderr
    messages = [decode_body(m["payload"].encode() if isinstance(m["payload"], str) else m["payload"])
                for m in hub.messages()]
    for message in messages:
        schema.check(message)
    everything = [e for w in windows for e in w]
    for key in (SHELL, POOL):
        found, scopes = reported(messages, key)
        assert found == totals(everything, key), (key, found)
        assert "address" not in scopes and "rest" not in scopes

    done = subprocess.run([MICROAGENT, "alerts", "--data", str(hub.data_dir), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    raised = [json.loads(line) for line in done.stdout.splitlines()]
    flood = [a for a in raised if a["rule"] == "network-cache-flood"]
    # one alert per flooded window, until floods prove routine (past the device's first hour
    # of learning): the first window's alert names the attack's two-way destinations
    assert flood and all(a["severity"] == "Medium" for a in flood)
    summarised = {"%s:%s" % (row.get("remote_address"), row.get("remote_port", "*"))
                  for m in messages for e in m["Events"] if e["Name"] == "ConnectionOverflow"
                  for row in e["Payload"] if row.get("bytes_in") and row.get("bytes_out")
                  and row.get("scope") in ("destination", "address")}
    for alert in flood:
        named = alert["evidence"][0]["two_way"]
        assert set(named) <= summarised
        assert all(destination in alert["title"] for destination in named[:5]), alert["title"]

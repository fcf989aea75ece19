"""End to end in the compact encoding: both engines deliver compact messages over TLS to the
local IoT Hub (the firmware engine from inside MicroPython), marked application/cbor, and what
the hub stores decodes to the JSON messages the JSON encoding prints."""
import json
import os
import subprocess
import sys

import pytest

from host_sim import schema, tracegen
from host_sim.commands.replay import SENDING_HEAP
from microagent.decode import body_of_line, decode_body, message_text

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")


def _rows(bodies):
    rows = []
    for body in bodies:
        message = decode_body(body)
        for event in message["Events"]:
            for item in event["Payload"]:
                rows.append((event["Name"], event["TimestampUTC"],
                             json.dumps(item, sort_keys=True)))
    return rows


@pytest.mark.parametrize("engine", ["firmware", "host"])
def test_compact_messages_reach_the_hub_marked_and_decode_to_the_json_rows(hub, tmp_path, engine):
    trace = tmp_path / "t.jsonl"
    tracegen.write(tracegen.random_trace(31, events=1500, distinct=120), trace)
    base = [MICROAGENT, "replay", str(trace), "--engine", engine, "--window", "600",
            "--cache-size", "64"]
    printed = subprocess.run(base + ["--heap", SENDING_HEAP["micropython"]], capture_output=True, text=True,
                             timeout=300)
    assert printed.returncode == 0, printed.stderr
    env = dict(os.environ, MICROAGENT_CONNECTION_STRING=hub.connection_string)
    sent = subprocess.run(base + ["--encoding", "compact", "--ca", hub.ca, "--port",
                                  str(hub.port), "--outbox", str(tmp_path / "outbox.db")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert sent.returncode == 0, sent.stderr
    stored = {}
    for m in hub.messages():
        assert m["properties"]["$.ct"] == "application/cbor"
        assert "$.ce" not in m["properties"]
        assert m["properties"]["$.ifid"] == "urn:azureiot:Security:SecurityAgent:1"
        stored.setdefault(m["properties"]["$.mid"], m["payload"])
    bodies = list(stored.values())
    json_lines = printed.stdout.splitlines()
    assert 0 < len(bodies) < len(json_lines)
    assert _rows(bodies) == _rows([body_of_line(x) for x in json_lines])
    for body in bodies:
        schema.check(message_text(decode_body(body)))
    shown = subprocess.run([MICROAGENT, "hub", "messages", "--data", hub.data_dir, "--json"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and shown.stderr == ""
    assert len(shown.stdout.splitlines()) == len(hub.messages())

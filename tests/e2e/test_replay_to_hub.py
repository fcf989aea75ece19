"""End to end: replayed traces delivered over TLS to the local IoT Hub emulator."""
import os
import re
import subprocess
import sys
import time

import pytest

from agent_process import AgentProcess
from host_sim import schema, tracegen
from host_sim.commands.replay import SENDING_HEAP
from message_rows import without_ids
from polling import wait_for

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACES = os.path.join(REPO, "tests", "fixtures", "traces")
OUTAGE_S = 2


def replay_args(trace, engine, *extra):
    return [MICROAGENT, "replay", str(trace), "--engine", engine, "--window", "600"] + [
        str(a) for a in extra]


def sending_env(hub):
    return dict(os.environ, MICROAGENT_CONNECTION_STRING=hub.connection_string)


def stored(hub):
    """Bodies the hub stored, without the duplicates a reconnect may cause (same $.mid)."""
    seen = set()
    bodies = []
    for m in hub.messages():
        mid = m["properties"]["$.mid"]
        if mid not in seen:
            seen.add(mid)
            bodies.append(m["payload"])
    return bodies


@pytest.mark.parametrize("engine", ["firmware", "host"])
def test_hub_stores_exactly_what_replay_prints(hub, tmp_path, engine):
    trace = tmp_path / "t.jsonl"
    tracegen.write(tracegen.random_trace(21, events=1500, distinct=120), trace)
    printed = subprocess.run(replay_args(trace, engine, "--cache-size", 64, "--heap", SENDING_HEAP["micropython"]),
                             capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    sent = subprocess.run(replay_args(trace, engine, "--cache-size", 64, "--ca", hub.ca,
                                      "--port", hub.port, "--outbox", tmp_path / "outbox.db"),
                          env=sending_env(hub), capture_output=True, text=True, timeout=300)
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout == ""
    assert hub.connection_string.split("SharedAccessKey=")[1] not in sent.stderr
    bodies = stored(hub)
    assert len(bodies) == len(printed.stdout.splitlines()) > 3
    for body in bodies:
        schema.check(body)
    assert without_ids(bodies) == without_ids(printed.stdout)
    for m in hub.messages():
        assert m["properties"]["$.ifid"] == "urn:azureiot:Security:SecurityAgent:1"
        assert m["properties"]["$.ct"] == "application/json"
        assert m["topic"].startswith("devices/dev1/messages/events/")


def test_wrong_key_is_refused_and_the_key_never_printed(hub, tmp_path):
    good = hub.connection_string
    bad_key = "A" * 43 + "="
    env = dict(os.environ, MICROAGENT_CONNECTION_STRING=re.sub(
        "SharedAccessKey=[^;]+", "SharedAccessKey=" + bad_key, good))
    proc = subprocess.run(replay_args(os.path.join(TRACES, "quiet-device.jsonl"), "firmware",
                                      "--ca", hub.ca, "--port", hub.port, "--timeout", 3),
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "the hub broker refused the connection: not authorized" in proc.stderr
    assert bad_key not in proc.stderr + proc.stdout
    assert "SharedAccessSignature" not in proc.stderr
    assert stored(hub) == []


def test_untrusted_hub_certificate_is_a_clear_error(hub, tmp_path):
    other_ca = tmp_path / "other.pem"
    from hub_emulator import certs
    os.makedirs(tmp_path / "other")
    certs.ensure(str(tmp_path / "other"), "elsewhere.local")
    other_ca.write_bytes((tmp_path / "other" / "ca.pem").read_bytes())
    proc = subprocess.run(replay_args(os.path.join(TRACES, "quiet-device.jsonl"), "host",
                                      "--ca", other_ca, "--port", hub.port, "--outbox",
                                      tmp_path / "o.db"),
                          env=sending_env(hub), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "server certificate not trusted" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("engine", ["host", "firmware"])
def test_hub_killed_and_restarted_mid_run(hub, tmp_path, engine):
    trace = os.path.join(TRACES, "busy-gateway.jsonl")
    printed = subprocess.run(replay_args(trace, engine, "--window", 60, "--heap", SENDING_HEAP["micropython"]),
                             capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr
    expected = without_ids(printed.stdout)
    proc = AgentProcess(replay_args(trace, engine, "--window", 60, "--ca", hub.ca, "--port",
                                    hub.port, "--outbox", tmp_path / "outbox.db", "--timeout", 60),
                        env=sending_env(hub))
    assert wait_for(lambda: len(hub.messages()) >= 20, 120), "delivery never started"
    seen = proc.stderr_lines
    hub.kill()
    proc.wait_for_stderr(("reconnecting", "retry"), after=seen)   # the sender meets the outage
    time.sleep(OUTAGE_S)  # the outage's length is the scenario, not a wait for something
    hub.start()
    returncode, out, err = proc.finish(300)
    got = without_ids(stored(hub))
    if engine == "host":
        assert returncode == 0, err
        assert got == expected  # the SQLite outbox lost nothing, in order
    else:
        report = [line for line in err.splitlines() if line.startswith("info: delivered")][-1]
        counts = re.search(r"(\d+) dropped from the full outbox \(and (\d+) more after sending",
                           report)
        assert counts, report
        dropped, unconfirmed = int(counts.group(1)), int(counts.group(2))
        # Never sent: certainly missing; sent without a PUBACK: the hub may have stored it.
        assert dropped <= len(expected) - len(got) <= dropped + unconfirmed, err
        assert all(message in expected for message in got)
        assert dropped + unconfirmed <= 8  # the replay outbox holds 8 messages
    assert "hub: " in err or "transport: " in err


def test_host_agent_run_sends_to_the_hub(hub, tmp_path):
    agent = AgentProcess([MICROAGENT, "run", "--once", "--seconds", "3", "--collectors",
                          "Process,SystemInformation", "--ca", hub.ca, "--port", str(hub.port),
                          "--outbox", str(tmp_path / "outbox.db")], env=sending_env(hub))
    agent.wait_ready()
    subprocess.run([sys.executable, "-c", "import time; time.sleep(0.1)", "run-to-hub-marker"])
    code, out, err = agent.finish(120)
    assert code == 0, err
    names = {}
    for body in stored(hub):
        for event in schema.check(body)["Events"]:
            names.setdefault(event["Name"], []).extend(event["Payload"])
    assert len(names["SystemInformation"]) == 1
    assert any("run-to-hub-marker" in i["commandline"] for i in names["ProcessCreate"])

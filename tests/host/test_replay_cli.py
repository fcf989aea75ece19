"""`microagent replay` end to end: real MicroPython, schema-valid output, clear errors."""
import json
import os
import subprocess
import sys

import pytest

from host_sim import schema, tracegen
from message_rows import without_ids

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACES = os.path.join(REPO, "tests", "fixtures", "traces")
MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")


def replay(*args):
    return subprocess.run([MICROAGENT, "replay"] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=300)


def items(stdout, name):
    found = []
    for line in stdout.splitlines():
        for event in json.loads(line)["Events"]:
            if event["Name"] == name:
                found.extend(event["Payload"])
    return found


@pytest.mark.parametrize("runtime", ["micropython", "micropython32"])
def test_quiet_device_on_the_default_heap_is_schema_valid(runtime, request):
    """The default heap: 96K on the 64-bit port (the code loads into it), a board's 64K on the
    32-bit build with the agent frozen."""
    if runtime == "micropython32":
        request.getfixturevalue("firmware_targets")
    proc = replay(os.path.join(TRACES, "quiet-device.jsonl"), "--window", 600, "--runtime", runtime)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) >= 20
    for line in lines:
        schema.check(line)
        assert len(line.encode()) <= 4096
    uplink = [i for i in items(proc.stdout, "ConnectionCreate") if i["remote_port"] == 8883]
    assert uplink and all(i["application_protocol"] == "MQTT" for i in uplink)
    assert sum(i["hit_count"] for i in uplink) == sum(
        1 for line in open(os.path.join(TRACES, "quiet-device.jsonl"))
        if '"remote_port":8883' in line)


def test_micropython_and_cpython_runtimes_agree(tmp_path):
    trace = tmp_path / "t.jsonl"
    tracegen.write(tracegen.random_trace(7, events=400, distinct=40), trace)
    runs = [replay(trace, "--window", 900, "--cache-size", 12, "--heap", "256K", "--runtime", rt)
            for rt in ("micropython", "cpython")]
    for proc in runs:
        assert proc.returncode == 0, proc.stderr
    assert without_ids(runs[0].stdout) == without_ids(runs[1].stdout)
    assert runs[0].stderr == runs[1].stderr
    assert "raise NetworkActivity_CacheSize" in runs[0].stderr


def test_malformed_line_is_one_clear_line_and_exit_2(tmp_path):
    trace = tmp_path / "bad.jsonl"
    good = json.dumps({"kind": "dns", "t": 1767225600, "hostname": "a", "address": "1.1.1.1"})
    trace.write_text(good + "\n" + good + "\n{\"kind\": \"process\", oops}\n")
    proc = replay(trace)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "microagent: error: %s:3: not valid JSON" % trace]


@pytest.mark.parametrize("engine", ["firmware", "host"])
def test_truncated_last_line_keeps_the_messages_already_collected(tmp_path, engine):
    trace = tmp_path / "cut.jsonl"
    events = list(tracegen.random_trace(3, events=60, distinct=10))
    text = "".join(json.dumps(e) + "\n" for e in events)
    trace.write_text(text[:-25])
    proc = replay(trace, "--window", 600, "--heap", "128K", "--engine", engine)
    assert proc.returncode == 2
    assert "%s:60: not valid JSON (truncated last line?)" % trace in proc.stderr
    assert "Traceback" not in proc.stderr
    kept = items(proc.stdout, "ConnectionCreate")
    assert kept, "complete windows must have been printed"
    for line in proc.stdout.splitlines():
        schema.check(line)


def test_host_engine_keeps_both_families_in_one_cache_and_evicts_oldest(tmp_path):
    trace = tmp_path / "v6.jsonl"
    lines = [{"kind": "connection", "t": 1767225600 + i, "protocol": "TCP",
              "local_address": "10.0.0.1", "local_port": 1000 + i, "remote_address": "1.1.1.1",
              "remote_port": 443} for i in range(5)]
    lines.append({"kind": "connection", "t": 1767225606, "protocol": "TCP",
                  "local_address": "2001:DB8:0:0:0:0:0:1", "local_port": 1,
                  "remote_address": "0:0:0:0:0:0:0:1", "remote_port": 2})
    trace.write_text("".join(json.dumps(e) + "\n" for e in lines))
    proc = replay(trace, "--engine", "host", "--cache-size", 2)
    assert proc.returncode == 0, proc.stderr
    for line in proc.stdout.splitlines():
        schema.check(line)
    connections = items(proc.stdout, "ConnectionCreate")
    assert [(i["local_address"], i["remote_address"], i["local_port"]) for i in connections] == [
        ("10.0.0.1", "1.1.1.1", 1004), ("2001:db8::1", "::1", 1)]
    assert items(proc.stdout, "DroppedEvents") == [{
        "timestamp": "2026-01-01T00:00:00.000Z", "collector": "ConnectionCreate",
        "cache_size": 2, "dropped": 0, "evicted": 4}]
    assert "evicting oldest entries" in proc.stderr and "NetworkActivity_CacheSize" in proc.stderr


def test_heap_exhaustion_is_a_clear_error():
    proc = replay(os.path.join(TRACES, "quiet-device.jsonl"), "--heap", "48K")
    assert proc.returncode == 2
    assert "ran out of heap (-X heapsize=48K)" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,needle", [
    (["--window", "0"], "--window must be positive"),
    (["--cache-size", "0"], "--cache-size must be at least 1"),
    (["--heap", "lots"], "--heap must look like 64K"),
])
def test_bad_options(args, needle):
    proc = replay(os.path.join(TRACES, "quiet-device.jsonl"), *args)
    assert proc.returncode == 2
    assert needle in proc.stderr


def test_missing_trace_file():
    proc = replay("/nonexistent/trace.jsonl")
    assert proc.returncode == 2
    assert "cannot read trace /nonexistent/trace.jsonl" in proc.stderr

"""`microagent replay --runtime micropython32|qemu-cortex-m3`: the firmware engine inside the
32-bit builds gives the spec's messages (checked against a hand-written trace), the same as the
64-bit unix port on larger traces, and clear errors for a heap it cannot have."""
import json
import os
import subprocess
import sys

import pytest
from message_rows import without_ids

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACES = os.path.join(REPO, "tests", "fixtures", "traces")
MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
TARGETS = ("micropython32", "qemu-cortex-m3")
T0 = 1767225600  # 2026-01-01T00:00:00Z


def run(*args):
    return subprocess.run([MICROAGENT] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=600)


def events(stdout, name):
    return [e for line in stdout.splitlines() for e in json.loads(line)["Events"]
            if e["Name"] == name]


def _connection(t, remote, port, bytes_in=10, bytes_out=20):
    return {"kind": "connection", "t": t, "protocol": "TCP", "local_address": "10.0.0.2",
            "local_port": 40000, "remote_address": remote, "remote_port": port,
            "bytes_in": bytes_in, "bytes_out": bytes_out, "direction": "out"}


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory):
    """Window 1 (60 s): a name resolved, then 3 connections to it (one cached entry, 3 hits),
    and 2 more remotes; the cache holds 2 entries, so the last remote is dropped (drop-new).
    Window 2: one connection to a high address, with byte counts past 2**31."""
    lines = [{"kind": "dns", "t": T0 + 1, "hostname": "hub.example.net", "address": "52.1.2.3"}]
    lines += [_connection(T0 + 2 + i, "52.1.2.3", 8883) for i in range(3)]
    lines += [_connection(T0 + 10, "198.51.100.7", 443), _connection(T0 + 11, "203.0.113.9", 80)]
    lines += [_connection(T0 + 70, "255.255.255.254", 65535, (1 << 31) + 1, 3)]
    path = tmp_path_factory.mktemp("trace") / "small.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


@pytest.mark.parametrize("target", TARGETS)
def test_small_trace_follows_the_spec(firmware_targets, small_trace, target):
    proc = run("replay", small_trace, "--runtime", target, "--window", "60", "--cache-size", "2")
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    connections = events(first, "ConnectionCreate")[0]["Payload"]
    assert [(c["remote_address"], c["hit_count"]) for c in connections] == \
        [("52.1.2.3", 3), ("198.51.100.7", 1)]
    assert connections[0]["bytes_in"] == 30 and connections[0]["bytes_out"] == 60
    assert connections[0]["dns_hit_count"] == 1
    assert connections[0]["extended_properties"] == {"host_name": "hub.example.net"}
    dropped = {d["collector"]: d["dropped"] for d in events(first, "DroppedEvents")[0]["Payload"]}
    assert dropped["ConnectionCreate"] == 1
    assert "cache full" in proc.stderr
    (late,) = events(second, "ConnectionCreate")[0]["Payload"]
    assert late["remote_address"] == "255.255.255.254" and late["remote_port"] == 65535
    assert late["bytes_in"] == (1 << 31) + 1


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("trace,window", [("quiet-device.jsonl", 7200), ("cache-storm.jsonl", 600)])
def test_same_messages_as_the_64_bit_port(firmware_targets, target, trace, window):
    path = os.path.join(TRACES, trace)
    reference = run("replay", path, "--window", window, "--heap", "1M")
    assert reference.returncode == 0, reference.stderr
    on_target = run("replay", path, "--window", window, "--runtime", target)
    assert on_target.returncode == 0, on_target.stderr
    assert without_ids(on_target.stdout) == without_ids(reference.stdout)
    assert on_target.stdout.count("\n") == reference.stdout.count("\n") > 0


@pytest.mark.parametrize("target", TARGETS)
def test_crosscheck_runs_on_the_target(firmware_targets, target):
    proc = run("crosscheck", os.path.join(TRACES, "quiet-device.jsonl"), "--runtime", target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "identical" in proc.stdout


def test_a_heap_larger_than_the_emulated_boards_is_refused(firmware_targets, small_trace):
    proc = run("replay", small_trace, "--runtime", "qemu-cortex-m3", "--heap", "1M")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "--heap 1M is more than the qemu-cortex-m3 image's heap" in proc.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_a_heap_too_small_for_the_caches_says_so(firmware_targets, small_trace, target):
    proc = run("replay", small_trace, "--runtime", target, "--heap", "24K", "--cache-size", "2000")
    assert proc.returncode == 2, proc.stdout
    assert "ran out of heap" in proc.stderr and "Traceback" not in proc.stderr


def test_the_heap_cap_holds_on_the_emulated_board(firmware_targets, small_trace):
    """Caches of 200 entries fit in 96K and not in 48K, on the board as under -X heapsize."""
    sizes = ("--cache-size", "200")
    fits = run("replay", small_trace, "--runtime", "qemu-cortex-m3", "--heap", "96K", *sizes)
    assert fits.returncode == 0, fits.stderr
    capped = run("replay", small_trace, "--runtime", "qemu-cortex-m3", "--heap", "48K", *sizes)
    assert capped.returncode == 2 and "ran out of heap" in capped.stderr


def test_micropython32_replay_sends_to_the_hub(firmware_targets, small_trace, tmp_path):
    """The firmware engine on the 32-bit build delivers what it prints, over TLS, with the key
    kept off its command line."""
    from hub_emulator.process import HubProcess
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device("dev32")
    printed = run("replay", small_trace, "--runtime", "micropython32", "--window", "60")
    assert printed.returncode == 0, printed.stderr
    with hub:
        env = dict(os.environ, MICROAGENT_CONNECTION_STRING=connection_string)
        sent = subprocess.run([MICROAGENT, "replay", small_trace, "--runtime", "micropython32",
                               "--window", "60", "--ca", hub.ca, "--port", str(hub.port)],
                              capture_output=True, text=True, timeout=300, env=env)
        bodies = [m["payload"].decode() if isinstance(m["payload"], bytes) else m["payload"]
                  for m in hub.messages("dev32")]
    assert sent.returncode == 0, sent.stderr
    assert connection_string.split("SharedAccessKey=")[1] not in sent.stderr
    assert without_ids("\n".join(bodies)) == without_ids(printed.stdout)


def test_sending_from_the_emulated_boards_replay_is_refused(firmware_targets, small_trace):
    env = dict(os.environ, MICROAGENT_CONNECTION_STRING="HostName=h;DeviceId=d;SharedAccessKey=AAAA")
    proc = subprocess.run([MICROAGENT, "replay", small_trace, "--runtime", "qemu-cortex-m3",
                           "--ca", os.path.join(REPO, "README.md")], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert "on qemu-cortex-m3 the agent sends over UART1" in proc.stderr

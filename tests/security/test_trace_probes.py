"""Bad trace lines, as an attacker or a careless user writes them, through both engines: one
line naming the file and line, exit 2, no traceback, and every window before the bad line
printed exactly as a replay of the good lines alone prints it."""
import json
import os
import re
import subprocess
import sys

import pytest
from message_rows import without_ids

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
ENGINES = ["host", "firmware"]
FIRMWARE_HEAP = "128K"


def process_line(t, commandline="ls", **extra):
    event = {"kind": "process", "t": t, "type": "exec", "pid": 4, "ppid": 1, "uid": 0,
             "commandline": commandline}
    event.update(extra)
    return json.dumps(event).encode()


T0 = 1700000000
# Three windows of 60 s before the bad line.
GOOD = [process_line(T0 + 100 * i, "cmd %d" % i) for i in range(3)]
BAD_T = b'{"kind":"process","t":%s,"type":"exec","pid":1,"ppid":1,"uid":0,"commandline":"x"}'
PROBES = {
    "nan": BAD_T % b"NaN",
    "infinity": BAD_T % b"Infinity",
    "minus-infinity": BAD_T % b"-Infinity",
    "t-1e15": BAD_T % b"1e15",
    "t-1e300": BAD_T % b"1e300",
    "nested-100000": b"[" * 100000 + b"]" * 100000,
    "nested-short": b'{"kind":"process","x":' + b"[" * 200 + b"]" * 200 + b"}",
    "invalid-utf8": process_line(T0 + 400).replace(b'"ls"', b'"\xff\xfe"'),
    "lone-surrogate": process_line(T0 + 400).replace(b'"ls"', b'"\\ud800"'),
    "lone-low-surrogate": process_line(T0 + 400).replace(b'"ls"', b'"a\\udc00b"'),
    # Well past the 4 MiB cap: the firmware engine's measure of a line its heap cannot hold may
    # fall short by the piece being read when the heap ran out (tracecheck.rest_of_line).
    "oversized-line": process_line(T0 + 400, "x" * (4 * 1024 * 1024 + 4096)),
}
EXPECTED = {
    "nan": "not valid JSON",
    "infinity": "not valid JSON",
    "minus-infinity": "not valid JSON",
    "t-1e15": "'t' must be epoch seconds",
    "t-1e300": "'t' must be epoch seconds",
    "nested-100000": "nested deeper",
    "nested-short": "nested deeper",
    "invalid-utf8": "not valid UTF-8",
    "lone-surrogate": "surrogate",
    "lone-low-surrogate": "surrogate",
    "oversized-line": "line",
}


def replay(trace, engine, *extra):
    return subprocess.run([MICROAGENT, "replay", str(trace), "--engine", engine, "--window", "60"]
                          + list(extra), capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def good_output(tmp_path_factory):
    """What each engine prints for the good lines alone (the oracle)."""
    trace = tmp_path_factory.mktemp("good") / "good.jsonl"
    trace.write_bytes(b"\n".join(GOOD) + b"\n")
    out = {}
    for engine in ENGINES:
        proc = replay(trace, engine)
        assert proc.returncode == 0, proc.stderr
        out[engine] = without_ids(proc.stdout)
        assert len(out[engine]) == 3
    return out


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("probe", sorted(PROBES))
def test_bad_line_is_one_error_naming_file_and_line(tmp_path, good_output, engine, probe):
    trace = tmp_path / ("%s.jsonl" % probe)
    trace.write_bytes(b"\n".join(GOOD + [PROBES[probe], process_line(T0 + 500)]) + b"\n")
    # The firmware engine's default heap has little to spare next to full caches and the code
    # the 64-bit port holds in it: here the checks of unusual lines get room to run (the default
    # heap is probed below); the 200 KB nested line gets room to be read at all.
    proc = replay(trace, engine, "--heap", "1M" if probe == "nested-100000" else FIRMWARE_HEAP)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("microagent: error: %s:4: " % trace), lines[0]
    assert EXPECTED[probe] in lines[0]
    assert "raise --heap" not in lines[0]  # a bad line is not a heap problem
    assert without_ids(proc.stdout) == good_output[engine]


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_on_the_default_firmware_heap_a_bad_line_is_still_named(tmp_path, probe):
    """With no heap to spare the checks may not run, but the error names the line all the same
    (and says when the window before it could not be flushed): never a traceback."""
    trace = tmp_path / ("%s.jsonl" % probe)
    trace.write_bytes(b"\n".join(GOOD + [PROBES[probe], process_line(T0 + 500)]) + b"\n")
    proc = replay(trace, "firmware")
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("microagent: error: %s:4: " % trace), stderr
    assert len(without_ids(proc.stdout)) >= 2


@pytest.mark.parametrize("engine", ENGINES)
def test_escaped_surrogate_pair_is_the_character_on_both_engines(tmp_path, engine):
    trace = tmp_path / "emoji.jsonl"
    trace.write_bytes(process_line(T0).replace(b'"ls"', b'"run \\ud83d\\ude00"') + b"\n")
    proc = replay(trace, engine, "--heap", FIRMWARE_HEAP)
    assert proc.returncode == 0, proc.stderr
    [message] = without_ids(proc.stdout)  # stdout decodes as strict UTF-8
    assert message["Events"][0]["Payload"][0]["commandline"] == "run \U0001F600"


@pytest.mark.parametrize("engine", ENGINES)
def test_timestamps_up_to_2106_are_accepted(tmp_path, engine):
    trace = tmp_path / "late.jsonl"
    trace.write_bytes(process_line(4294967295) + b"\n")
    proc = replay(trace, engine)
    assert proc.returncode == 0, proc.stderr
    [message] = without_ids(proc.stdout)
    assert message["Events"][0]["TimestampUTC"].startswith("2106-02-07")


@pytest.mark.parametrize("size", ["400000", "262145", "511"])
def test_max_message_size_is_bounded_by_iot_hub(tmp_path, size):
    trace = tmp_path / "t.jsonl"
    trace.write_bytes(GOOD[0] + b"\n")
    proc = replay(trace, "host", "--max-message-size", size)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "microagent: error: --max-message-size must be in 512..262144 (IoT Hub's 256 KB limit), "
        "got %s" % size]
    assert replay(trace, "host", "--max-message-size", "262144").returncode == 0


def test_a_line_too_long_for_the_heap_says_so_and_names_the_line(tmp_path):
    trace = tmp_path / "long.jsonl"
    # Far longer than what the default heap has free next to full caches, far below the line cap.
    long_line = process_line(T0 + 400, "x" * 60000) + b"\n"
    trace.write_bytes(b"\n".join(GOOD) + b"\n" + long_line)
    proc = replay(trace, "firmware")
    assert proc.returncode == 2
    [line] = proc.stderr.decode().splitlines()
    found = re.fullmatch(r"microagent: error: %s:4: out of heap reading this line \((\d+) bytes or "
                         r"more; raise --heap\)" % re.escape(str(trace)), line)
    assert found, line
    # A lower bound that holds: more than one 256-byte piece was read, no more than the line.
    assert 256 < int(found.group(1)) <= len(long_line)
    assert len(without_ids(proc.stdout)) == 3
    assert replay(trace, "firmware", "--heap", "1M").returncode == 0


def test_a_deeply_nested_run_config_is_one_error(tmp_path):
    config = tmp_path / "deep.json"
    config.write_text("[" * 100000 + "]" * 100000)
    proc = subprocess.run([MICROAGENT, "run", "--once", "--config", str(config), "--output",
                           os.devnull, "--seconds", "1"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "microagent: error: %s: not a configuration (nested too deep)" % config]

"""The compact encoding against the JSON one: decoding a compact message gives the JSON encoding's
events and items, field for field, on the bundled and generated traces, both engines; cbor2 and
a CDDL validator (cddl-verifier) read the bytes independently; the decoder survives any bytes."""
import base64
import json
import os
import subprocess
import sys

import cbor2
import cddl_verifier
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from host_sim import crosscheck as cc
from host_sim.engine import build_host_engine
from host_sim.replay import replay_firmware, replay_host
from microagent import hub
from microagent.config import Config
from microagent.decode import DecodeError, body_of_line, decode_body, decode_compact, message_text
from microagent.compact import is_compact
from microagent.encode import COMPACT, JSON

from test_properties import traces

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACES = os.path.join(REPO, "tests", "fixtures", "traces")
MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
SCHEMA = os.path.join(REPO, "schema", "compact-message.cddl")
AGENT = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"


def _events(lines):
    """Every event of the messages, without its random Id, with the envelope it came in."""
    out = []
    for line in lines:
        message = decode_body(body_of_line(line))
        envelope = {k: v for k, v in message.items() if k != "Events"}
        for event in message["Events"]:
            out.append((envelope, {k: v for k, v in event.items() if k != "Id"}))
    return out


def _flat(lines):
    # The same events may be split at other points: compare item by item, with their event.
    rows = []
    for envelope, event in _events(lines):
        header = {k: v for k, v in event.items() if k != "Payload"}
        rows.extend((envelope, header, item) for item in event["Payload"])
    return rows


def _replay(engine, trace, window_ms, encoding, cache_size=None):
    lines = []
    if engine == "host":
        replay_host(trace, window_ms, cache_size, lines.append, lambda w: None, agent=AGENT,
                    encoding=encoding)
    else:
        replay_firmware(trace, window_ms, cache_size, lines.append, lambda w: None,
                        runtime="cpython", agent=AGENT, encoding=encoding)
    return lines


@pytest.mark.parametrize("engine", ["host", "firmware"])
@pytest.mark.parametrize("trace,window", [("quiet-device", 600), ("busy-gateway", 60),
                                          ("cache-storm", 300)])
def test_decoded_compact_equals_json_field_for_field(engine, trace, window):
    path = os.path.join(TRACES, trace + ".jsonl")
    as_json = _replay(engine, path, window * 1000, JSON)
    compact = _replay(engine, path, window * 1000, COMPACT)
    assert all(not line.startswith("{") for line in compact)
    assert _flat(compact) == _flat(as_json)
    assert sum(len(body_of_line(x)) for x in compact) * 5 < sum(len(x) for x in as_json)


@pytest.mark.parametrize("trace,window", [("quiet-device", 600), ("busy-gateway", 300),
                                          ("cache-storm", 300)])
def test_crosscheck_passes_in_compact_on_micropython(trace, window):
    proc = subprocess.run([MICROAGENT, "crosscheck", os.path.join(TRACES, trace + ".jsonl"),
                           "--window", str(window), "--encoding", "compact"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "crosscheck passed" in proc.stdout


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.data_too_large])
@given(events=traces(), cache_size=st.integers(1, 300))
def test_generated_traces_crosscheck_in_compact(tmp_path_factory, events, cache_size):
    path = tmp_path_factory.mktemp("trace") / "t.jsonl"
    with open(path, "w") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
    report = cc.crosscheck(str(path), 60000, cache_size, heap="2M", encoding=COMPACT)
    assert report.ok, "\n".join(report.problems)
    assert _flat(_replay("host", str(path), 60000, COMPACT, cache_size)) == _flat(
        _replay("host", str(path), 60000, JSON, cache_size))


def _periodic(encoding, utc_offset, max_size=4096):
    lines = []
    engine = build_host_engine(8, lambda b, n: lines.append(bytes(b[:n])), lambda w: None, AGENT,
                               max_size, utc_offset, encoding=encoding)
    nics = [{"type": "ETH", "vlans": [], "vendor": "Ünïcode ✓", "info": {
        "mac": "aa:bb", "ipv4_address": "10.0.0.2", "ipv6_address": None}}]
    engine.send_periodic("SystemInformation", [{"os_dist": "Debian", "nics": nics,
                                                 "cores": 4, "ratio": 0.5, "ok": True}],
                         1767225600123)
    engine.send_periodic("SBoM", [{"name": "pkg%d" % i, "version": "1.%d" % i,
                                   "vendor": "Debian Maintainers"} for i in range(300)],
                         1767225600123)
    return lines


@pytest.mark.parametrize("utc_offset", [0, 120, -90, None])
def test_periodic_events_and_local_times_match(utc_offset):
    as_json = [b.decode() for b in _periodic(JSON, utc_offset)]
    compact = _periodic(COMPACT, utc_offset)
    decoded = [message_text(decode_body(b)) for b in compact]
    assert _flat(decoded) == _flat(as_json)
    # A whole message reads back byte for byte as the JSON encoder writes one (bar the Id).
    first = json.loads(decoded[0])
    first["Events"][0]["Id"] = json.loads(as_json[0])["Events"][0]["Id"]
    assert message_text(first) == as_json[0]


def test_cbor2_and_the_cddl_schema_read_the_bytes_independently():
    lines = _replay("firmware", os.path.join(TRACES, "quiet-device.jsonl"), 600000, COMPACT)
    lines += [base64.b64encode(b).decode() for b in _periodic(COMPACT, 60)][:3]
    validator = cddl_verifier.Validator(open(SCHEMA).read())
    for line in lines:
        body = body_of_line(line)
        top = cbor2.loads(body)  # tag 256 and the references resolved by cbor2
        assert top[0] == 1 and top[1] == bytes.fromhex(AGENT.replace("-", ""))
        result = validator.validate(body)
        assert result.valid, result.diagnostics[0].message
    broken = cbor2.dumps(cbor2.CBORTag(256, [1, b"x" * 16, "1", 5, None, 0,
                                             [0, b"y" * 16, [1, 2, 3, 4, "cmd", 7, 1]]]))
    assert not validator.validate(broken).valid


def _valid_body():
    return _periodic(COMPACT, 0, 512)[1]


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=600))
def test_the_decoder_never_crashes_on_arbitrary_bytes(data):
    for body in (data, b"\xd9\x01\x00\x9f" + data):
        try:
            message = decode_compact(body)
        except DecodeError as exc:
            assert "\n" not in str(exc)
        else:
            assert isinstance(message, dict)
            message_text(message)


@settings(max_examples=400, deadline=None)
@given(cut=st.integers(0, 600), flips=st.lists(st.tuples(st.integers(0, 600),
                                                         st.integers(0, 255)), max_size=4))
def test_the_decoder_never_crashes_on_damaged_messages(cut, flips):
    body = bytearray(_valid_body())
    for at, value in flips:
        body[at % len(body)] = value
    body = bytes(body[:max(cut, 4)])
    try:
        message_text(decode_compact(body))
    except DecodeError as exc:
        assert "\n" not in str(exc)


def test_truncated_corrupted_and_unknown_versions_are_named():
    body = _valid_body()
    with pytest.raises(DecodeError, match="truncated"):
        decode_compact(body[:-10])
    with pytest.raises(DecodeError, match="unknown compact message version 2"):
        decode_compact(body[:4] + b"\x02" + body[5:])
    with pytest.raises(DecodeError, match="after its end"):
        decode_compact(body + b"\x00")


def test_replay_prints_base64_and_decode_turns_it_back(tmp_path):
    trace = os.path.join(TRACES, "quiet-device.jsonl")
    def run(*extra):
        return subprocess.run([MICROAGENT, "replay", trace, "--engine", "host", "--window",
                               "600"] + list(extra), capture_output=True, text=True, timeout=300)
    as_json = run()
    compact = run("--encoding", "compact")
    assert as_json.returncode == 0 and compact.returncode == 0, compact.stderr
    lines = compact.stdout.splitlines()
    assert lines and all(is_compact(base64.b64decode(x, validate=True)) for x in lines)
    source = tmp_path / "compact.txt"
    source.write_text("\n".join([lines[0], lines[1][:32], "not base64!", lines[2]]) + "\n")
    decoded = subprocess.run([MICROAGENT, "decode", str(source)], capture_output=True, text=True,
                             timeout=60)
    assert decoded.returncode == 1
    errors = decoded.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in decoded.stderr
    assert "compact.txt:2: truncated" in errors[0] and "compact.txt:3:" in errors[1]
    assert _flat(decoded.stdout.splitlines()) == _flat([lines[0], lines[2]])
    raw = tmp_path / "one.cbor"
    raw.write_bytes(base64.b64decode(lines[0]))
    one = subprocess.run([MICROAGENT, "decode", str(raw)], capture_output=True, text=True)
    assert one.returncode == 0 and _flat(one.stdout.splitlines()) == _flat(lines[:1])
    everything = subprocess.run([MICROAGENT, "decode", "-"], input=compact.stdout,
                                capture_output=True, text=True)
    assert _flat(everything.stdout.splitlines()) == _flat(as_json.stdout.splitlines())


def test_cost_shows_the_saving():
    proc = subprocess.run([MICROAGENT, "cost", os.path.join(TRACES, "busy-gateway.jsonl"),
                           "--window", "60", "--json"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    raw, as_json, compact = [json.loads(line) for line in proc.stdout.splitlines()]
    assert raw["blocks_per_day"] == 13123 * raw["blocks_per_day"] / raw["blocks"]
    assert compact["blocks"] < as_json["blocks"] < raw["blocks"]
    assert compact["saving"] >= 100
    assert compact["devices_per_S1"] == int(400000 // compact["blocks_per_day"])
    table = subprocess.run([MICROAGENT, "cost", os.path.join(TRACES, "quiet-device.jsonl")],
                           capture_output=True, text=True, timeout=300)
    assert table.returncode == 0 and "devices/S1" in table.stdout and "compact" in table.stdout


def test_hub_messages_shows_both_kinds_and_skips_a_bad_one(tmp_path):
    from hub_emulator import store
    from hub_emulator.database import open_db
    data = tmp_path / "hub"
    db = open_db(str(data))
    compact = _periodic(COMPACT, 0)[0]
    as_json = _periodic(JSON, 0)[0]
    store.add(db, "dev1", "t", {"$.ct": "application/cbor"}, compact)
    store.add(db, "dev1", "t", {"$.ct": "application/cbor"}, compact[:40])
    store.add(db, "dev1", "t", {"$.ct": "application/json"}, as_json)
    proc = subprocess.run([MICROAGENT, "hub", "messages", "--data", str(data), "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    shown = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [m["id"] for m in shown] == [1, 3]
    assert _flat([message_text(shown[0]["body"])]) == _flat([message_text(shown[1]["body"])])
    assert proc.stderr.strip() == proc.stderr.strip().splitlines()[0]
    assert "message 2 from dev1 skipped: truncated" in proc.stderr
    table = subprocess.run([MICROAGENT, "hub", "messages", "--data", str(data)],
                           capture_output=True, text=True, timeout=60)
    assert table.stdout.count("SystemInformation[1]") == 2


def test_encoding_key_content_type_and_flag():
    config = Config()
    assert config.encoding() == "json"
    assert config.apply({"IothubModule_MessageEncoding": "Compact"}) == (
        {"IothubModule_MessageEncoding": "Compact"}, {})
    assert config.encoding() == "compact"
    _, rejected = config.apply({"IothubModule_MessageEncoding": "cbor"})
    assert "IothubModule_MessageEncoding" in rejected and config.encoding() == "compact"

    class Identity:
        module_id = None
        device_id = "d"
    body = _valid_body()
    assert "%24.ct=application%2Fcbor&" in hub.telemetry_topic(Identity, "m", body)
    assert "%24.ce" not in hub.telemetry_topic(Identity, "m", body)
    assert "%24.ct=application%2Fjson&%24.ce=utf-8" in hub.telemetry_topic(Identity, "m", b"{}")


def test_the_host_agent_switches_encoding_at_the_next_window():
    from host_sim.agent import HostAgent, Options
    lines = []
    config = Config()
    agent = HostAgent(Options(collectors=[]), AGENT, lines.append, lambda text: None, config)
    assert agent.engine.encoder.ENCODING == JSON
    config.apply({"IothubModule_MessageEncoding": "Compact"})
    agent.apply_config()
    assert agent.engine.encoder.ENCODING == COMPACT
    agent.engine.send_periodic("SBoM", [{"name": "a", "version": "1", "vendor": "v"}], 1000)
    assert is_compact(body_of_line(lines[-1]))
    assert decode_body(body_of_line(lines[-1]))["Events"][0]["Payload"] == [
        {"name": "a", "version": "1", "vendor": "v"}]


def test_run_once_prints_compact_lines_that_decode():
    proc = subprocess.run([MICROAGENT, "run", "--once", "--seconds", "0.5", "--output", "-",
                           "--encoding", "compact", "--collectors", "SystemInformation"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(is_compact(body_of_line(x)) for x in lines)
    names = [e["Name"] for x in lines for e in decode_body(body_of_line(x))["Events"]]
    assert names == ["SystemInformation"]


@pytest.mark.parametrize("body,reason", [
    (b"\xd9\x01\x00" + b"\x9f" * 200000, "nesting"),                 # deep indefinite arrays
    (b"\xd9\x01\x00" + b"\x81" * 200000 + b"\x01", "nesting"),       # deep definite arrays
    (b"\xd9\x01\x00\x9f\x01\x5b" + b"\xff" * 8, "truncated"),        # a 2**64-byte string claimed
    (b"\xd9\x01\x00\x9f\x01\xd8\x19\x00", "reference 0 not found"),  # a reference to nothing
    (b"\xd9\x01\x00\x9f\x01\x50" + bytes(16) + b"\x61v\x00\xf6\x00\x9f\x00\x50" + bytes(16)
     + b"\x87\x00\x01\x02\x03\x61x\x07\x01\xff\xff", "process type"),  # a code out of range
])
def test_hostile_bodies_are_refused_with_the_reason(body, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_compact(body)

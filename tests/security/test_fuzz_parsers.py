"""Hypothesis fuzzing of every parser that reads outside input: whatever bytes arrive, each
either returns or raises its one documented error, never another exception.

MQTT packets (hub side; the firmware client's parser is fuzzed in tests/transport), SAS tokens,
twin JSON (hub and device side), stored bodies, trace lines, utmp/btmp records, dpkg status,
board profiles, connection strings and property bags. The collectors' parsers (netlink, DNS
packets, auth logs) are fuzzed beside them in tests/collectors/test_robustness.py."""
import asyncio
import json
import os
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host_sim.collectors import login, sbom
from host_sim.engine import build_host_engine
from hub_emulator import bounded_json, cli, codec, sas, store, topics, twin
from microagent import profile
from microagent.config import Config
from microagent.engine import build_engine
from microagent.sas import ConnectionString, ConnectionStringError
from microagent.trace import TraceError, parse_line, record_event, time_ms

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=30)


def _nested(depth, leaf=b"1"):
    return b"[" * depth + leaf + b"]" * depth


# MQTT packets, as the hub reads them from a connection.
@FUZZ
@given(st.binary(max_size=300))
def test_hub_packet_reader_and_parser(data):
    async def read_all():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        while True:
            packet = await codec.read_packet(reader, 4096)
            if packet is None:
                return
            codec.parse(*packet)
    try:
        asyncio.run(read_all())
    except (codec.ProtocolError, asyncio.IncompleteReadError):
        pass


@FUZZ
@given(st.sampled_from([1, 3, 8, 10, 12, 14]), st.integers(0, 15), st.binary(max_size=200))
def test_hub_parser_on_well_framed_packets(ptype, flags, body):
    try:
        codec.parse(ptype, flags, body)
    except codec.ProtocolError:
        pass


# SAS tokens, as a device presents them in CONNECT.
token_text = st.one_of(
    st.text(max_size=200),
    st.builds(lambda sr, sig, se, extra: "SharedAccessSignature sr=%s&sig=%s&se=%s%s"
              % (sr, sig, se, extra), st.text(max_size=40), st.text(max_size=60),
              st.text(alphabet=string.digits + "²١٢ -+e.", max_size=30),
              st.sampled_from(["", "&skn=x", "&se=1", "&x"])))


@FUZZ
@given(token_text)
def test_sas_token_parse_and_verify(password):
    fields = sas.parse_token(password)
    if fields is None:
        return
    try:
        sas.verify(fields, "hub.local", "dev1", "c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5MTI=")
    except sas.TokenRejected:
        pass


# JSON a device sends: stored bodies and twin patches.
@FUZZ
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                 st.integers(0, 300).map(_nested)))
def test_bounded_json_reader(data):
    try:
        value = bounded_json.loads(data)
    except bounded_json.BoundsError:
        return
    bounded_json.dumps(value)  # whatever it returns is strict JSON again


@FUZZ
@given(json_values.filter(lambda v: "NaN" not in json.dumps(v) and "Infinity" not in json.dumps(v)))
def test_bounded_json_agrees_with_json_within_bounds(value):
    text = json.dumps(value)
    assert bounded_json.loads(text) == json.loads(text)


@FUZZ
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                 st.fixed_dictionaries({"Events": st.lists(st.dictionaries(
                     st.sampled_from(["Name", "Payload"]), json_values), max_size=3)}).map(
                     lambda v: json.dumps(v).encode())))
def test_hub_messages_summary_of_any_body(payload):
    assert "\n" not in cli._summary(payload, store.decode_body(payload))


@FUZZ
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                 st.integers(0, 40).map(lambda d: b'{"a":' * d + b"1" + b"}" * d)))
def test_twin_patch_parser(payload):
    try:
        assert isinstance(twin.parse_patch(payload), dict)
    except twin.TwinError:
        pass


@FUZZ
@given(st.dictionaries(st.text(max_size=30), json_values, max_size=6))
def test_device_config_apply(desired):
    config = Config()
    applied, rejected = config.apply(desired)
    assert set(applied).isdisjoint(rejected)


@FUZZ
@given(st.text(max_size=200))
def test_property_bags_and_twin_topics(topic):
    topics.parse_property_bag(topic)
    topics.request_id(topic)
    topics.twin_request(topic)


# Trace lines, through both engines.
EVENT_KEYS = ("kind", "t", "type", "pid", "ppid", "uid", "commandline", "executable",
              "user_name", "protocol", "local_address", "local_port", "remote_address",
              "remote_port", "bytes_in", "bytes_out", "direction", "hostname", "address",
              "operation")
field_values = st.one_of(
    json_values, st.sampled_from(["process", "connection", "dns", "login", "exec", "fork",
                                  "TCP", "UDP", "ICMP", "in", "out", "Login", "Logout",
                                  "LoginFailed", "10.0.0.1", "::1", "1.2.3", "256.1.1.1"]),
    st.integers(-2, 70000), st.floats(0, 5e9))
events = st.dictionaries(st.sampled_from(EVENT_KEYS), field_values, max_size=12)


def _engines():
    sink = lambda buffer, length: bytes(buffer[:length]).decode()  # noqa: E731 (must be UTF-8)
    return [build_host_engine(8, sink, lambda text: None, "agent", 4096),
            build_engine(4, 8, 4, 4096, "agent", sink, lambda text: None, "json")]


@FUZZ
@given(st.one_of(st.binary(max_size=300), events.map(lambda e: json.dumps(e).encode()),
                 events.map(lambda e: json.dumps(e, ensure_ascii=False).encode("utf-8",
                                                                               "surrogatepass"))))
def test_trace_lines_through_both_engines(line):
    try:
        event = parse_line(line, "fuzz.jsonl:1")
        for engine in _engines():
            record_event(engine, event, 0, "fuzz.jsonl:1", [0, 0])
            engine.flush(time_ms(event), time_ms(event) + 1000)
    except TraceError as exc:
        assert str(exc).startswith("fuzz.jsonl:1: ") and "\n" not in str(exc)


# utmp/btmp records and dpkg status files, as the Linux collectors read them.
@FUZZ
@given(st.binary(max_size=3 * login.RECORD_SIZE))
def test_utmp_records(data):
    stats = {"corrupt": 0}
    for record in login.parse_utmp(data, stats):
        assert record.pid >= 0 and record.t >= 0


@FUZZ
@given(st.text(max_size=400))
def test_dpkg_status(text):
    for paragraph in sbom.parse_control(text):
        sbom.dpkg_installed(paragraph.get("Status", ""))
        sbom.opkg_installed(paragraph.get("Status", ""))


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("ab:\n \tPackage:Status: install ok installed\n")),
               max_size=300))
def test_dpkg_status_file(tmp_path_factory, text):
    root = tmp_path_factory.mktemp("root")
    status = os.path.join(str(root), "var/lib/dpkg/status")
    os.makedirs(os.path.dirname(status))
    with open(status, "w") as f:
        f.write(text)
    for item in sbom.collect(str(root)):
        json.dumps(item)


# Board profiles and device connection strings.
@FUZZ
@given(st.one_of(json_values, st.dictionaries(st.sampled_from(["name", "heap_bytes", "outbox",
                                                               "config", "collectors", "mpy"]),
                                              json_values, max_size=6)))
def test_board_profile_check(data):
    try:
        profile.check(data, "fuzz.json")
    except profile.ProfileError as exc:
        assert str(exc).startswith("fuzz.json") and "\n" not in str(exc)


@FUZZ
@given(st.one_of(st.text(max_size=300), st.integers(0, 3000).map(lambda d: "[" * d + "]" * d)))
def test_board_profile_files(tmp_path_factory, text):
    import board_profiles
    boards = tmp_path_factory.mktemp("boards")
    with open(os.path.join(str(boards), "fuzz.json"), "w") as f:
        f.write(text)
    with open(os.path.join(board_profiles.BOARDS_DIR, board_profiles.SCHEMA_FILE)) as f:
        schema = f.read()
    with open(os.path.join(str(boards), board_profiles.SCHEMA_FILE), "w") as f:
        f.write(schema)
    try:
        board_profiles.load("fuzz", str(boards))
    except profile.ProfileError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(st.one_of(st.text(max_size=200),
                 st.lists(st.sampled_from(["HostName=h.example", "DeviceId=d", "ModuleId=m",
                                           "SharedAccessKey=a2V5", "GatewayHostName=g",
                                           "SharedAccessKey=!!", "DeviceId=", "x", "=",
                                           "HostName=a b"]), max_size=6).map(";".join)))
def test_connection_strings(text):
    try:
        ConnectionString(text)
    except ConnectionStringError as exc:
        assert "a2V5" not in str(exc)

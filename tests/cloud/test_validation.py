"""One validation layer for every message the cloud reads (issue 24, item 1): the typed poison
of the issue (a list as a command line, an object as an address, a list as a port or a
collector, dates at the ends of time...) is dropped or refused in read_message, so the rules
never crash on it; a device sending it gets one malformed-messages alert per hour, on the
non-store path (Evaluation) and through the ingest into the cloud store alike, while an honest
device's alerts are unchanged. Honest messages are made by the real host engine (replay)."""
import copy
import json

import cbor2
import pytest
from cbor2 import CBORTag

from alert_helpers import START, login_failed, replay
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.messages import (UnreadableMessage, format_time, message_time,
                                            parse_time, read_checked, read_message)
from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.alerts.run import Evaluation
from host_sim.cloud.alerts.sources import StoredMessage
from host_sim.cloud.ingest import Ingest
from host_sim.cloud.store import open_store
from host_sim.cloud.validate import in_range

JSON_TYPE = {"$.ct": "application/json"}
EARLY = "0001-01-01T00:00:00+14:00"
LATE = "9999-12-31T23:59:59-14:00"


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    """One message of the host engine with a ProcessCreate, a ConnectionCreate and a Login."""
    events = [
        {"kind": "process", "t": START + 1, "type": "exec", "pid": 10, "ppid": 1, "uid": 0,
         "commandline": "/usr/bin/curl -s http://198.51.100.7/", "executable": "/usr/bin/curl"},
        {"kind": "connection", "t": START + 2, "protocol": "TCP", "local_address": "10.0.0.2",
         "local_port": 40000, "remote_address": "198.51.100.7", "remote_port": 443,
         "direction": "out", "bytes_in": 10, "bytes_out": 20},
        login_failed(START + 3, "203.0.113.9"),
    ]
    bodies = replay(events, tmp_path_factory.mktemp("honest"))
    assert len(bodies) == 1
    message = json.loads(bodies[0])
    assert sorted(e["Name"] for e in message["Events"]) == ["ConnectionCreate", "Login",
                                                            "ProcessCreate"]
    return message


def event_of(message, name):
    return next(e for e in message["Events"] if e["Name"] == name)


def poisoned(honest, name, field, value):
    message = copy.deepcopy(honest)
    if name == "DroppedEvents":
        message["Events"].append({"Name": "DroppedEvents", "Category": "Periodic",
                                  "EventType": "Operational",
                                  "TimestampUTC": format_time(START), "Payload": [
                                      {"timestamp": format_time(START), "collector": "Login",
                                       "cache_size": 256, "dropped": 1, "evicted": 0}]})
    event_of(message, name)["Payload"][0][field] = value
    return json.dumps(message).encode()


POISON = [
    ("ProcessCreate", "commandline", ["/bin/sh", "-c"]),
    ("ProcessCreate", "commandline", "x" * 2049),
    ("ProcessCreate", "user_id", [0]),
    ("ProcessCreate", "user_id", {"uid": 0}),
    ("ProcessCreate", "hit_count", 0),
    ("ProcessCreate", "process_id", 10 ** 40),
    ("ProcessCreate", "timestamp", EARLY),
    ("ProcessCreate", "executable", 7),
    ("ConnectionCreate", "remote_address", {"ip": "198.51.100.7"}),
    ("ConnectionCreate", "remote_address", "not an address"),
    ("ConnectionCreate", "local_port", [40000]),
    ("ConnectionCreate", "local_port", True),
    ("ConnectionCreate", "remote_port", 65536),
    ("ConnectionCreate", "bytes_in", -1),
    ("ConnectionCreate", "bytes_out", 1.5),
    ("ConnectionCreate", "direction", ["out"]),
    ("ConnectionCreate", "direction", {"to": "out"}),
    ("ConnectionCreate", "extended_properties", {"host_name": ["a"]}),
    ("Login", "user_name", {"name": "root"}),
    ("Login", "remote_address", [1]),
    ("Login", "timestamp", LATE),
    ("Login", "operation", "LoginSucceeded"),
    ("DroppedEvents", "collector", [1]),
    ("DroppedEvents", "collector", "collector-17"),
    ("DroppedEvents", "dropped", -5),
]


@pytest.mark.parametrize("name,field,value", POISON)
def test_a_poisoned_item_is_dropped_and_named_and_the_rest_reaches_the_rules(honest, name,
                                                                            field, value):
    message, verdict = read_checked(poisoned(honest, name, field, value), JSON_TYPE)
    assert verdict.dropped == 1
    assert verdict.reason.startswith("event ") and "(%s) item 1: %s " % (name, field) in \
        verdict.reason and "\n" not in verdict.reason
    assert event_of(message, name)["Payload"] == []
    others = [e for e in message["Events"] if e["Name"] != name]
    assert others and all(len(e["Payload"]) == 1 for e in others)
    engine = AlertEngine(load_rules())
    engine.feed("hostile", JSON_TYPE, message, 0.0)
    engine.check_silence()
    json.dumps([a.as_dict() for a in engine.sorted_alerts()], allow_nan=False)


@pytest.mark.parametrize("stamp", [EARLY, LATE, "1969-12-31T23:59:59.000Z", "10000-01-01T00:00:00Z",
                                   "not a time", 5, ["2026-01-01T00:00:00.000Z"]])
def test_an_event_dated_outside_1970_9999_is_dropped_and_never_sets_the_clock(honest, stamp):
    message = copy.deepcopy(honest)
    event_of(message, "Login")["TimestampUTC"] = stamp
    checked, verdict = read_checked(json.dumps(message).encode(), JSON_TYPE)
    assert verdict.dropped == 1 and "(Login): TimestampUTC is not a time" in verdict.reason
    assert [e["Name"] for e in checked["Events"]] == ["ProcessCreate", "ConnectionCreate"] or \
        sorted(e["Name"] for e in checked["Events"]) == ["ConnectionCreate", "ProcessCreate"]
    assert START <= message_time(checked, 0.0) < START + 3600


@pytest.mark.parametrize("text,seconds", [
    (EARLY, -62135647200.0), (LATE, 253402351199.0), ("0001-01-01T00:00:00.000Z", -62135596800.0),
    ("10000-01-01T00:00:00Z", None), ("x" * 5000, None), (None, None), ([1], None)])
def test_times_at_the_ends_of_time_parse_and_never_raise(text, seconds):
    assert parse_time(text) == seconds
    assert seconds is None or not in_range(seconds)


def test_the_last_millisecond_of_9999_is_a_time_and_formats():
    last = parse_time("9999-12-31T23:59:59.999Z")
    assert in_range(last) and format_time(last).startswith("9999-12-31T23:59:59.")
    assert in_range(parse_time("1970-01-01T00:00:00.000Z"))
    assert not in_range(parse_time("1969-12-31T23:59:59.999Z"))


def test_unknown_and_null_fields_are_removed_and_the_item_kept(honest):
    message = copy.deepcopy(honest)
    item = event_of(message, "ProcessCreate")["Payload"][0]
    item["evil"] = [[1]]
    item["executable"] = None
    event_of(message, "Login")["Extra"] = {"a": 1}
    message["Injected"] = [1]
    checked, verdict = read_checked(json.dumps(message).encode(), JSON_TYPE)
    assert verdict.dropped == 0 and verdict.reason is None
    item = event_of(checked, "ProcessCreate")["Payload"][0]
    assert "evil" not in item and "executable" not in item and item["process_id"] == 10
    assert "Extra" not in event_of(checked, "Login") and "Injected" not in checked


def test_an_unknown_event_is_dropped_with_its_items(honest):
    message = copy.deepcopy(honest)
    message["Events"].append({"Name": "Process\x1bCreate", "Payload": [{}, {}, {}]})
    checked, verdict = read_checked(json.dumps(message).encode(), JSON_TYPE)
    assert verdict.dropped == 3 and "unknown event 'Process\\x1bCreate'" in verdict.reason
    assert len(checked["Events"]) == 3


@pytest.mark.parametrize("change,reason", [
    (lambda m: m.update(AgentId=["a"]), "AgentId is not text"),
    (lambda m: m.update(AgentVersion="1" * 500), "AgentVersion is not text"),
    (lambda m: m.update(Events={"Name": "Login"}), "no Events list"),
    (lambda m: m["Events"].append(["Login"]), "lacks a Name or a Payload"),
    (lambda m: m["Events"][0].update(Name=["Login"]), "lacks a Name or a Payload"),
    (lambda m: m["Events"][0].update(Payload=[[1]]), "lacks a Name or a Payload"),
])
def test_a_message_whose_envelope_fails_is_refused_in_one_line(honest, change, reason):
    message = copy.deepcopy(honest)
    change(message)
    with pytest.raises(UnreadableMessage, match=reason) as caught:
        read_message(json.dumps(message).encode(), JSON_TYPE)
    assert "\n" not in str(caught.value)


def test_a_compact_system_information_with_nics_as_a_number_is_dropped():
    def body(nics):
        return cbor2.dumps(CBORTag(256, [1, bytes(16), "0.1.0", 1767225600000, 0, 0, [
            4, bytes(16), "SystemInformation", "Periodic", "Security",
            {"os_dist": "debian", "nics": nics}]]))
    message, verdict = read_checked(body(5), {})
    assert verdict.dropped == 1 and "nics is not a list" in verdict.reason
    assert message["Events"][0]["Payload"] == []
    message, verdict = read_checked(body([{"type": "ETH", "vlans": [10],
                                           "info": {"ipv4_address": "10.0.0.2"}}]), {})
    assert verdict.dropped == 0 and message["Events"][0]["Payload"][0]["nics"][0]["type"] == "ETH"


def stream(honest, tmp_path):
    """An honest device's brute force (8 failed logins from one address) and a hostile
    device's poison, a refused message and a CBOR bomb, interleaved as they arrive."""
    bodies = replay([login_failed(START + 60 + i, "203.0.113.50") for i in range(8)],
                    tmp_path)
    hostile = [poisoned(honest, name, field, value) for name, field, value in POISON]
    hostile += [b"not json", b'{"Events": [], "a": NaN}',
                cbor2.dumps(CBORTag(256, [1, "x" * 100000] + [CBORTag(25, 0)] * 4000))]
    stored = [StoredMessage(i, "honest", START + 100 + i, JSON_TYPE, body.encode())
              for i, body in enumerate(bodies)]
    stored += [StoredMessage(100 + i, "hostile", START + 200 + i, {}, body)
               for i, body in enumerate(hostile)]
    return stored, len(POISON), 3


def test_a_hostile_device_gets_one_malformed_alert_per_hour_and_the_honest_one_its_alert(
        honest, tmp_path):
    stored, dropped, refused = stream(honest, tmp_path)
    lines = []
    evaluation = Evaluation(load_rules(), on_skip=lines.append)
    alerts = [a.as_dict() for a in evaluation.batch(stored)]
    assert len(lines) == refused and all("\n" not in line for line in lines)
    honest_rules = {a["rule"] for a in alerts if a["device"] == "honest"}
    assert "brute-force" in honest_rules and "malformed-messages" not in honest_rules
    malformed = [a for a in alerts if a["rule"] == "malformed-messages"]
    assert len(malformed) == 1
    alert = malformed[0]
    assert alert["device"] == "hostile" and alert["severity"] == "Medium"
    assert alert["count"] == dropped + refused
    assert alert["evidence"][0]["detail"].startswith(
        "%d message(s) refused, %d item(s) dropped; first: event " % (refused, dropped))
    assert alert["key"] == "hour from " + format_time(START + 200 - (START + 200) % 3600)
    json.dumps(alerts, allow_nan=False)


def test_the_next_hour_of_arrival_is_a_new_alert(honest):
    evaluation = Evaluation(load_rules())
    for arrival in (START, START + 10, START + 3600, START + 3700):
        evaluation.feed(StoredMessage(None, "hostile", arrival, {}, b"not json"))
    malformed = [a for a in evaluation.engine.sorted_alerts() if a.rule == "malformed-messages"]
    assert [a.count for a in malformed] == [2, 2]


def test_the_ingest_stores_one_malformed_alert_and_the_honest_alerts(honest, tmp_path, store_dsn):
    stored, dropped, refused = stream(honest, tmp_path)
    skipped = []
    ingest = Ingest(open_store(store_dsn), load_rules(), on_skip=skipped.append)
    try:
        for offset, message in enumerate(stored):
            ingest.feed("hub", 0, offset, message)
        ingest.commit()
        assert len(skipped) == refused
        rows = ingest.store.alerts(rule="malformed-messages")
        assert [(r["device"], r["count"]) for r in rows] == [("hostile", dropped + refused)]
        assert ingest.store.alerts(rule="brute-force", device_id="honest")
        assert ingest.store.device_row("hostile")["skipped"] == refused
    finally:
        ingest.close()


def test_a_restarted_ingest_goes_on_counting_the_hour(store_dsn):
    """The hour's counts are taken up from the stored alert, whether the device has a state
    (a readable message came) or not: the same counts as an ingest never restarted."""
    poison = json.dumps({"Events": [{"Name": "Login", "TimestampUTC": format_time(START),
                                     "Payload": [{"operation": ["Login"]}]}]}).encode()
    offset = 0
    for device, first in (("only-refused", b"not json"), ("with-state", poison)):
        for run, body in enumerate((first, b"not json")):
            ingest = Ingest(open_store(store_dsn), load_rules())
            try:
                ingest.feed("hub", 0, offset, StoredMessage(offset, device, START + run, {}, body))
                offset += 1
                ingest.commit()
            finally:
                ingest.close()
    store = open_store(store_dsn)
    try:
        rows = {r["device"]: r for r in store.alerts(rule="malformed-messages")}
    finally:
        store.close()
    assert rows["only-refused"]["count"] == 2 and rows["with-state"]["count"] == 2
    assert rows["only-refused"]["evidence"][0]["detail"].startswith(
        "2 message(s) refused, 0 item(s) dropped; first: not JSON")
    assert rows["with-state"]["evidence"][0]["detail"].startswith(
        "1 message(s) refused, 1 item(s) dropped; first: event 1 (Login) item 1: operation")
    assert rows["with-state"]["first"] == START and rows["with-state"]["last"] == START + 1

"""The rules file: shipped defaults, a user file overriding them, and clear errors."""
import datetime
import json

import pytest
from hypothesis import given, settings, strategies as st

from host_sim.cloud.alerts.messages import UnreadableMessage, parse_time, read_message
from host_sim.replay import replay_host
from microagent.decode import body_of_line
from host_sim.cloud.alerts.rules import RulesError, load_rules


def write(tmp_path, data, name="user.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data, indent=1))
    return str(path)


def test_defaults_cover_every_rule_the_issue_names():
    rules = load_rules(catalogue_path=None)
    assert {r["id"] for r in rules.rules} == {
        "brute-force", "new-outbound-destination", "new-process", "new-inbound-service",
        "dropped-events", "outbox-loss", "new-baseline-failure", "sbom-change", "silence",
        "network-cache-flood", "invalid-sas-signature", "expired-sas-token", "unknown-device",
        "refused-connect", "refused-topic", "device-connected-twice", "refused-certificate",
        "dps-registration-refused", "malformed-messages"}
    brute = rules.by_id("brute-force")
    assert (brute["count"], brute["within_s"]) == (8, 120)
    assert rules.by_id("silence")["windows"] == 3
    assert rules.learning_s == 86400


def test_user_file_changes_keys_disables_and_adds(tmp_path):
    rules = load_rules(write(tmp_path, {
        "learning": {"duration_s": 600},
        "rules": [{"id": "brute-force", "count": 5},
                  {"id": "sbom-change", "enabled": False},
                  {"id": "telnet", "kind": "each", "event": "ConnectionCreate",
                   "where": {"local_port": 23, "direction": "in"}, "per": ["remote_address"],
                   "severity": "High", "title": "telnet from {remote_address}",
                   "what_to_do": "turn telnet off"}]}))
    assert rules.learning_s == 600
    assert rules.by_id("brute-force")["count"] == 5
    assert rules.by_id("brute-force")["within_s"] == 120      # kept from the default
    assert rules.by_id("sbom-change") is None
    assert rules.by_id("telnet")["severity"] == "High"
    assert load_rules().by_id("brute-force")["count"] == 8    # the defaults are untouched


@pytest.mark.parametrize("data,error", [
    ('{"rules": [\n{"id": "x",,}]}', "line 2"),
    ({"rules": [{"id": "brute-force", "severity": "Urgent"}]}, "rule 'brute-force': severity must be one of"),
    ({"rules": [{"id": "brute-force", "within_s": -1}]}, "rule 'brute-force': within_s must be a positive"),
    ({"rules": [{"id": "new-process", "per": "commandline"}]}, "rule 'new-process': per must be a non-empty list"),
    ({"rules": [{"id": "n", "kind": "telepathy"}]}, "rule 'n': kind must be one of"),
    ({"rules": [{"id": "n", "kind": "each", "event": "Login", "per": ["user_name"],
                 "severity": "Low", "title": "x"}]}, "rule 'n': missing key 'what_to_do'"),
    ({"rules": [{"id": "brute-force", "colour": "red"}]}, "unknown key 'colour'"),
    ({"rules": [{"id": "brute-force", "title": "{unclosed"}]}, "title is not a valid template"),
    ({"learning": {"duration_s": "a day"}}, "learning.duration_s must be a number"),
    ({"rules": [{"count": 3}]}, "rule 1 has no string \"id\""),
    ({"rules": {}}, "\"rules\" must be a list"),
    ({"alerts": []}, "unknown top-level key 'alerts'"),
])
def test_mistakes_name_the_file_and_the_rule(tmp_path, data, error):
    path = write(tmp_path, data)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert str(caught.value).startswith("rules file %s" % path)
    assert error in str(caught.value)

AGENT = "5a1e5a1e-0000-4000-8000-000000000001"


def test_missing_file(tmp_path):
    with pytest.raises(RulesError, match="cannot read rules file .*nope.json: No such file"):
        load_rules(str(tmp_path / "nope.json"))


@pytest.mark.parametrize("body,properties,reason", [
    (b"[" * 200000, {}, "recursion"),
    (b"\xff\xfe", {}, "can't decode byte 0xff"),
    (b"hello", {}, "not JSON"),
    (b'{"Events": 3}', {}, "no Events list"),
    (b'{"Events": [{"Name": "Login", "Payload": [1]}]}', {}, "lacks a Name or a Payload"),
    (b'{"Events": []}', {"$.ct": "application/cbor"}, "not a compact message"),
    (b'{"Events": []}', {"$.ct": "text/plain"}, "unknown content type 'text/plain'"),
])
def test_unreadable_messages_are_one_line_reasons(body, properties, reason):
    with pytest.raises(UnreadableMessage, match=reason):
        read_message(body, properties)


@settings(max_examples=300)
@given(st.datetimes(min_value=datetime.datetime(1971, 1, 1), max_value=datetime.datetime(2099, 12, 31)))
def test_timestamps_read_as_datetime_reads_them(moment):
    stamp = moment.replace(tzinfo=datetime.timezone.utc)
    text = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    expected = datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    assert abs(parse_time(text) - expected) < 1e-6


@pytest.mark.parametrize("text", ["2026-01-01T00:61:00.000Z", "2026-01-01T00:00:60.000Z",
                                  "2026-01-01T00:0a:00.000Z", "2026-13-01T00:00:00.000Z", "", 7])
def test_impossible_timestamps_are_none(text):
    assert parse_time(text) is None


def test_compact_messages_read_as_the_json_rows(tmp_path):
    """The consumer reads a compact body as the very message the JSON encoding sends."""
    trace = tmp_path / "trace.jsonl"
    trace.write_text("".join(json.dumps(e) + "\n" for e in (
        {"kind": "login", "t": 1767225600.0, "operation": "LoginFailed", "pid": 7,
         "user_name": "root", "executable": "sshd", "remote_address": "10.9.9.9"},
        {"kind": "connection", "t": 1767225601.0, "protocol": "TCP", "local_address": "10.0.0.2",
         "local_port": 40000, "remote_address": "93.184.216.34", "remote_port": 443,
         "bytes_in": 5, "bytes_out": 6, "direction": "out"})))
    bodies = {}
    for encoding in ("json", "compact"):
        lines = []
        replay_host(str(trace), 60000, 16, lines.append, lambda w: None, agent=AGENT,
                    encoding=encoding)
        bodies[encoding] = [body_of_line(line) for line in lines]
    as_json = [read_message(b, {"$.ct": "application/json"}) for b in bodies["json"]]
    as_compact = [read_message(b, {"$.ct": "application/cbor"}) for b in bodies["compact"]]
    for message in as_json + as_compact:
        for event in message["Events"]:
            event.pop("Id")  # a fresh GUID per encoding run
    assert as_compact == as_json and as_json

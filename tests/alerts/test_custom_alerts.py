"""Defender's custom alert types, per device glob and per tag: each fires on what breaks its
allow list or range, on the devices it names and no others. The oracle is the trace each test
writes."""
import json

import pytest

from alert_helpers import START, evaluate, login_failed, merged, of_rule, quiet, replay
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.messages import read_message
from host_sim.cloud.alerts.rules import RulesError, load_rules

T0 = START + 3600


def _rules(tmp_path, rules, device_tags=None):
    path = tmp_path / "custom.json"
    data = {"rules": rules}
    if device_tags is not None:
        data["device_tags"] = device_tags
    path.write_text(json.dumps(data))
    return str(path)


def _custom(rule_id, kind, **fields):
    rule = {"id": rule_id, "kind": "custom", "type": kind, "severity": "Medium",
            "title": "%s {type}" % kind, "what_to_do": "check"}
    rule.update(fields)
    return rule


def _process(t, commandline, executable=None):
    event = {"kind": "process", "t": t, "type": "exec", "pid": 7000, "ppid": 1, "uid": 0,
             "commandline": commandline}
    if executable:
        event["executable"] = executable
    return event


def _connection(t, address, direction, port=443):
    return {"kind": "connection", "t": t, "protocol": "TCP", "local_address": "192.168.1.20",
            "local_port": 40000 if direction == "out" else 22, "remote_address": address,
            "remote_port": port if direction == "out" else 50000, "bytes_in": 10,
            "bytes_out": 10, "direction": direction}


def _alerts_for(bodies, rules_path, devices):
    engine = AlertEngine(load_rules(rules_path))
    for device in devices:
        for body in bodies:
            engine.feed(device, {}, read_message(body.encode(), {}), 0.0)
    return [a.as_dict() for a in engine.sorted_alerts()]


def test_allow_lists_fire_on_what_is_outside_them_on_the_devices_named(tmp_path):
    events = merged(quiet(hours=2.0), [
        _process(T0, "/usr/bin/python3 /opt/app/main.py", "/usr/bin/python3"),
        _process(T0 + 1, "/tmp/evil --x"),
        _connection(T0 + 2, "52.166.2.10", "out", 8883),
        _connection(T0 + 3, "198.51.100.7", "out"),
        _connection(T0 + 4, "192.168.1.5", "in"),
        _connection(T0 + 5, "203.0.113.50", "in"),
        {"kind": "login", "t": T0 + 6, "operation": "Login", "pid": 1, "user_name": "admin",
         "executable": "sshd", "remote_address": "192.168.1.5"},
        {"kind": "login", "t": T0 + 7, "operation": "Login", "pid": 2, "user_name": "mallory",
         "executable": "sshd", "remote_address": "192.168.1.6"}])
    bodies = replay(events, tmp_path)
    rules = _rules(tmp_path, [
        _custom("procs", "ProcessNotAllowed", devices=["gw-*"],
                allowed=["/usr/bin/python3", "sh", "*/poll-sensors"]),
        _custom("to", "ConnectionToIpNotAllowed", devices=["gw-*"],
                allowed=["52.166.0.0/16", "216.239.35.0"]),
        _custom("from", "ConnectionFromIpNotAllowed", tags=["factory"],
                allowed=["192.168.1.0/24"]),
        _custom("users", "LocalUserNotAllowed", tags=["factory"], allowed=["admin"])],
        device_tags={"line-*": ["factory"]})
    alerts = _alerts_for(bodies, rules, ["gw-1", "line-7", "lab-3"])
    keys = {(a["device"], a["rule"], a["key"]) for a in alerts if a["rule"] in
            ("procs", "to", "from", "users")}
    assert keys == {("gw-1", "procs", "/tmp/evil --x"), ("gw-1", "to", "198.51.100.7"),
                    ("line-7", "from", "203.0.113.50"), ("line-7", "users", "mallory")}


def test_ranges_judge_each_whole_window(tmp_path):
    t = START + 3600
    events = list(quiet(hours=1.0))
    # window 1 (10 min): 12 failed logins; window 2: 1; window 3: 0 failed but a login
    events += [login_failed(t + i, "203.0.113.9") for i in range(12)]
    events += [login_failed(t + 600 + 5, "203.0.113.9")]
    events += [{"kind": "login", "t": t + 1200 + 5, "operation": "Login", "pid": 1,
                "user_name": "admin", "executable": "sshd", "remote_address": "192.168.1.5"}]
    # windows are 600 s from the first event (00:00:22): 30 connections in one of them, 1 later
    events += [_connection(t + 1860 + i * 0.5, "10.1.0.%d" % (i + 1), "out", 80)
               for i in range(30)]
    events += [_connection(t + 3000, "10.1.0.1", "out", 80)]
    bodies = replay(merged(events), tmp_path, window_s=600)
    rules = _rules(tmp_path, [
        _custom("failed", "FailedLocalLoginsNotInAllowedRange", devices=["*"], max=5),
        _custom("active", "ActiveConnectionsNotInAllowedRange", devices=["*"], min=1, max=20)])
    alerts = evaluate(bodies, rules)
    failed = of_rule(alerts, "failed")
    assert len(failed) == 1 and failed[0]["evidence"][0]["count"] == 12
    active = of_rule(alerts, "active")
    assert [a["evidence"][0]["count"] for a in active] == [30]


@pytest.mark.parametrize("rule,message", [
    ({"type": "Nope", "devices": ["*"]}, "type must be one of"),
    ({"type": "ProcessNotAllowed", "allowed": ["x"]}, "say which devices"),
    ({"type": "ConnectionToIpNotAllowed", "devices": ["*"], "allowed": ["not-an-ip"]},
     "not an address"),
    ({"type": "ActiveConnectionsNotInAllowedRange", "devices": ["*"]}, "min and/or max"),
])
def test_a_bad_custom_rule_is_one_line(tmp_path, rule, message):
    rule = dict({"id": "c", "kind": "custom", "severity": "Low", "title": "t",
                 "what_to_do": "w"}, **rule)
    with pytest.raises(RulesError) as caught:
        load_rules(_rules(tmp_path, [rule]))
    assert message in str(caught.value) and "rule 'c'" in str(caught.value)

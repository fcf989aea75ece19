"""Each rule fires when it should, on messages the real host engine made from hand-made and
generated traces; the quiet-device sample raises nothing after its baseline."""
import calendar
import json
import os
import time

from hypothesis import HealthCheck, given, settings, strategies as st

from host_sim import tracegen
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.messages import message_time, read_message
from host_sim.cloud.alerts.rules import load_rules

from alert_helpers import (START, evaluate, login_failed, merged, of_rule, periodic, quiet,
                           replay, rules_file)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUIET_SAMPLE = os.path.join(REPO, "tests", "fixtures", "traces", "quiet-device.jsonl")


def read_trace(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_quiet_sample_raises_nothing_after_its_baseline(tmp_path):
    bodies = replay(read_trace(QUIET_SAMPLE), tmp_path)
    assert len(bodies) > 20
    # an hour of learning, then three hours of the same quiet behaviour
    assert evaluate(bodies, rules_file(tmp_path, learning_s=3600)) == []
    assert evaluate(bodies) == []


def test_burst_of_failed_logins_is_exactly_one_alert_for_that_address(tmp_path):
    attacker = "203.0.113.9"
    burst = [login_failed(START + 7200 + 5 * i, attacker) for i in range(15)]
    # below the threshold: 7 within 120 s; 10 spread so that no 8 fit in 120 s
    few = [login_failed(START + 8000 + 10 * i, "198.51.100.4") for i in range(7)]
    spread = [login_failed(START + 9000 + 20 * i, "198.51.100.5") for i in range(10)]
    bodies = replay(merged(quiet(), burst, few, spread), tmp_path)
    alerts = of_rule(evaluate(bodies), "brute-force")
    assert [a["key"] for a in alerts] == [attacker]
    alert = alerts[0]
    assert alert["severity"] == "High" and alert["count"] == 15
    assert alert["first"] == "2026-01-01T02:00:00.000Z"
    assert alert["last"] == "2026-01-01T02:01:10.000Z"
    assert {e["remote_address"] for e in alert["evidence"]} == {attacker}
    assert len(alert["evidence"]) == 15 and attacker in alert["what_to_do"]


def test_a_burst_split_over_two_windows_is_still_one_alert(tmp_path):
    # window boundary at START + 600 * k (the trace starts at START): straddle 2 h
    first_quiet = quiet()
    t0 = first_quiet[0]["t"]
    boundary = t0 + 600 * 12
    burst = [login_failed(boundary - 40 + 10 * i, "203.0.113.77") for i in range(8)]
    alerts = of_rule(evaluate(replay(merged(first_quiet, burst), tmp_path)), "brute-force")
    assert [(a["key"], a["count"]) for a in alerts] == [("203.0.113.77", 8)]


def _fires(times, count=8, within=120.0):
    """The oracle: some COUNT consecutive failures (sorted) lie within WITHIN seconds."""
    times = sorted(times)
    return any(times[i + count - 1] - times[i] <= within for i in range(len(times) - count + 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(min_value=0, max_value=4 * 3600 * 1000), min_size=1,
                         max_size=30), min_size=1, max_size=4))
def test_fuzzed_failed_logins_fire_exactly_when_eight_fit_in_120_s(tmp_path, per_address):
    events = []
    expected = set()
    for n, offsets in enumerate(per_address):
        address = "192.0.2.%d" % (n + 1)
        times = [START + ms / 1000.0 for ms in offsets]
        events += [login_failed(t, address) for t in times]
        if _fires([round(t, 3) for t in times]):
            expected.add(address)
    events.sort(key=lambda e: e["t"])
    alerts = of_rule(evaluate(replay(events, tmp_path)), "brute-force")
    assert {a["key"] for a in alerts} == expected
    assert len(alerts) == len(expected)


def test_new_process_destination_and_service_after_the_baseline_only(tmp_path):
    base = quiet()
    t0 = base[0]["t"]
    during = t0 + 1200    # learning (first hour): seen, not alerted
    after = t0 + 3 * 3600
    extra = [
        {"kind": "process", "t": during, "type": "exec", "pid": 900, "ppid": 1, "uid": 0,
         "commandline": "/usr/sbin/logrotate /etc/logrotate.conf"},
        {"kind": "process", "t": after, "type": "exec", "pid": 901, "ppid": 1, "uid": 0,
         "commandline": "/tmp/.x/miner --pool 198.51.100.66:3333"},
        {"kind": "process", "t": after + 60, "type": "exec", "pid": 902, "ppid": 1, "uid": 0,
         "commandline": "/usr/sbin/logrotate /etc/logrotate.conf"},
        {"kind": "connection", "t": after + 1, "protocol": "TCP", "local_address": "192.168.1.20",
         "local_port": 40100, "remote_address": "198.51.100.66", "remote_port": 3333,
         "bytes_in": 10, "bytes_out": 999, "direction": "out"},
        {"kind": "connection", "t": after + 2, "protocol": "TCP", "local_address": "192.168.1.20",
         "local_port": 2323, "remote_address": "192.168.1.99", "remote_port": 51000,
         "bytes_in": 5, "bytes_out": 5, "direction": "in"},
    ]
    bodies = replay(merged(base, extra), tmp_path)
    alerts = evaluate(bodies, rules_file(tmp_path, learning_s=3600))
    assert [a["key"] for a in of_rule(alerts, "new-process")] == [
        "/tmp/.x/miner --pool 198.51.100.66:3333"]
    assert [a["key"] for a in of_rule(alerts, "new-outbound-destination")] == ["198.51.100.66 3333"]
    assert [a["key"] for a in of_rule(alerts, "new-inbound-service")] == ["TCP 2323"]
    learned = [a for a in alerts if a["rule"].startswith("new-")]
    assert len(learned) == 3
    # the miner also runs from a hidden folder in /tmp: the catalogue says so, learning or not
    assert {a["rule"] for a in alerts} - {a["rule"] for a in learned} == {
        "binary-from-temp", "binary-hidden-location"}
    inbound = of_rule(alerts, "new-inbound-service")[0]
    assert inbound["evidence"][0]["remote_address"] == "192.168.1.99"
    assert "2323" in inbound["title"]


NEW_VALUE_RULES = {
    # rule: (event name, the items it looks at, the value that must be new)
    "new-process": ("ProcessCreate", lambda i: True, lambda i: (i["commandline"],)),
    "new-outbound-destination": ("ConnectionCreate", lambda i: i.get("direction") == "out",
                                 lambda i: (i["remote_address"], i["remote_port"])),
    "new-inbound-service": ("ConnectionCreate", lambda i: i.get("direction") == "in",
                            lambda i: (i["transport_protocol"], i["local_port"])),
}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10000), learning_s=st.sampled_from([0, 1800, 3600, 7200]))
def test_every_new_value_after_learning_is_alerted_once(tmp_path, seed, learning_s):
    """Fuzzed traces against a plain reference: the values first seen after the learning
    period are exactly the new-value alerts of each rule."""
    events = list(tracegen.random_trace(seed, events=400, distinct=60, span=4 * 3600))
    bodies = replay(events, tmp_path)
    messages = [json.loads(b) for b in bodies]
    start = _seconds(messages[0]["Events"][0]["TimestampUTC"])
    ungrouped = [{"id": rule, "group_after": 10 ** 9} for rule in NEW_VALUE_RULES]
    # dozens of new values an hour, ungrouped: past the hourly alert budget, lifted here
    unbounded = (10 ** 6, 10 ** 6)
    alerts = evaluate(bodies, rules_file(tmp_path, ungrouped, learning_s=learning_s),
                      budget=unbounded)
    grouped = evaluate(bodies, rules_file(tmp_path, learning_s=learning_s, name="grouped.json"),
                       budget=unbounded)
    for rule, (name, wanted, value) in NEW_VALUE_RULES.items():
        seen, expected = set(), set()
        for m in messages:
            learning = _seconds(m["Events"][0]["TimestampUTC"]) < start + learning_s
            for e in m["Events"]:
                for item in e["Payload"] if e["Name"] == name else ():
                    if wanted(item):
                        key = " ".join(str(v) for v in value(item))
                        if key not in seen and not learning:
                            expected.add(key)
                        seen.add(key)
        assert sorted(a["key"] for a in of_rule(alerts, rule)) == sorted(expected), rule
        # grouped (the defaults): a burst's values past the first few are counted in one alert
        single = [a for a in of_rule(grouped, rule) if not a["key"].startswith("burst since")]
        bursts = [a for a in of_rule(grouped, rule) if a["key"].startswith("burst since")]
        assert {a["key"] for a in single} <= expected
        assert len(single) + sum(a["count"] for a in bursts) == len(expected), rule


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10000), cache=st.integers(4, 40))
def test_dropped_events_fire_for_exactly_the_caches_that_overflowed(tmp_path, seed, cache):
    """The reference works from the raw trace: a cache overflows in a window when more distinct
    keys arrive than it holds (logins are never merged)."""
    events = list(tracegen.random_trace(seed, events=300, distinct=40, span=3 * 3600))
    t0, window = events[0]["t"], 600.0
    keys = {}
    for e in events:
        k = int((e["t"] - t0) // window)
        if e["kind"] == "process":
            keys.setdefault(("ProcessCreate", k), set()).add((e["commandline"], e["uid"]))
        elif e["kind"] == "connection":
            keys.setdefault(("ConnectionCreate", k), set()).add(
                (e["protocol"], e["local_address"], e["local_port"], e["remote_address"],
                 e["remote_port"]))
        elif e["kind"] == "dns":
            keys.setdefault(("DNS", k), set()).add(e["address"])
        else:
            keys.setdefault(("Login", k), set()).add(id(e))
    expected = {collector for (collector, _), found in keys.items() if len(found) > cache}
    alerts = of_rule(evaluate(replay(events, tmp_path, cache_size=cache)), "dropped-events")
    assert {a["key"] for a in alerts} == expected


def _seconds(stamp):
    date, _, fraction = stamp.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S")) + float("0." + (fraction or "0"))


def test_dropped_events_name_the_cache_and_the_config_key(tmp_path):
    flows = [{"kind": "connection", "t": START + 10 + i * 0.5, "protocol": "TCP",
              "local_address": "10.0.0.1", "local_port": 1024 + i,
              "remote_address": "198.51.100.%d" % (i % 200 + 1), "remote_port": 22,
              "bytes_in": 0, "bytes_out": 60, "direction": "out"} for i in range(300)]
    bodies = replay(flows, tmp_path, cache_size=64)
    alerts = of_rule(evaluate(bodies), "dropped-events")
    assert [a["key"] for a in alerts] == ["ConnectionCreate"]
    alert = alerts[0]
    assert alert["evidence"][0]["evicted"] == 300 - 64
    assert "NetworkActivity_CacheSize" in alert["what_to_do"] and "64" in alert["what_to_do"]


def test_outbox_gap_in_firmware_message_ids(tmp_path):
    bodies = replay(quiet(hours=1), tmp_path)
    mids = ["a1b2c3d4-%d" % n for n in (1, 2, 3, 7, 8)] + ["99887766-%d" % n for n in
                                                           range(4, 4 + len(bodies) - 5)]
    alerts = of_rule(evaluate(bodies, mids=mids), "outbox-loss")
    assert [a["key"] for a in alerts] == ["a1b2c3d4:4-6"]
    assert alerts[0]["evidence"][0]["missing"] == 3
    # host agent ids carry no order: no alert
    assert of_rule(evaluate(bodies, mids=["%032x" % n for n in range(len(bodies))]),
                   "outbox-loss") == []


def test_new_cis_failures_and_sbom_changes_between_reports(tmp_path):
    def check(check_id):
        return {"check_id": check_id, "check_result": "Fail", "error": "",
                "description": "check %s" % check_id, "remediation": "fix %s" % check_id,
                "severity": "Medium"}
    reports = (periodic("Baseline", [check("CIS-1.1"), check("CIS-2.2")], START)
               + periodic("SBoM", [{"name": "openssl", "version": "3.0.1", "vendor": "debian"},
                                   {"name": "zlib", "version": "1.2", "vendor": "debian"}], START)
               + periodic("Baseline", [check("CIS-1.1"), check("CIS-2.2"), check("CIS-5.3")],
                          START + 86400)
               + periodic("SBoM", [{"name": "openssl", "version": "3.0.9", "vendor": "debian"},
                                   {"name": "zlib", "version": "1.2", "vendor": "debian"},
                                   {"name": "netcat", "version": "1.10", "vendor": "debian"}],
                          START + 86400))
    alerts = evaluate(reports)
    baseline = of_rule(alerts, "new-baseline-failure")
    assert [a["key"] for a in baseline] == ["CIS-5.3"]
    assert baseline[0]["what_to_do"] == "fix CIS-5.3"
    sbom = of_rule(alerts, "sbom-change")
    assert sorted((a["key"], a["evidence"][0]["change"]) for a in sbom) == [
        ("netcat", "added"), ("openssl", "changed")]
    assert "3.0.1 -> 3.0.9" in [a for a in sbom if a["key"] == "openssl"][0]["title"]


def test_a_report_split_over_messages_is_one_report(tmp_path):
    many = [{"name": "pkg%03d" % i, "version": "1.%d" % i, "vendor": "v"} for i in range(200)]
    first = periodic("SBoM", many, START)
    assert len(first) > 1
    second = periodic("SBoM", many[:150] + [dict(many[150], version="9")] + many[151:], START + 3600)
    alerts = of_rule(evaluate(first + second), "sbom-change")
    assert [a["key"] for a in alerts] == ["pkg150"]


def test_silence_of_three_windows(tmp_path):
    base = quiet(hours=6)
    t0 = base[0]["t"]
    gap_from, gap_to = t0 + 2 * 3600 + 100, t0 + 3 * 3600 + 100  # 1 h = 6 windows of 600 s
    short_from, short_to = t0 + 4 * 3600 + 100, t0 + 4 * 3600 + 1100  # under 3 windows
    events = [e for e in base if not (gap_from <= e["t"] < gap_to or short_from <= e["t"] < short_to)]
    alerts = of_rule(evaluate(replay(events, tmp_path)), "silence")
    assert len(alerts) == 1
    evidence = alerts[0]["evidence"][0]
    assert evidence["window_s"] == 600
    assert alerts[0]["severity"] == "High"


def test_a_device_that_stops_is_silent_on_the_fleet_clock(tmp_path):
    long_runner = replay(quiet(hours=4, seed=5), tmp_path, name="a.jsonl")
    stopper = replay(quiet(hours=1, seed=6), tmp_path, name="b.jsonl")
    engine = AlertEngine(load_rules())
    for device, bodies in (("stays", long_runner), ("stops", stopper)):
        for body in bodies:
            message = read_message(body.encode(), {})
            engine.feed(device, {}, message, message_time(message, 0.0))
    silent = engine.check_silence()
    assert [(a.device, a.rule) for a in silent] == [("stops", "silence")]


def test_a_silence_is_news_when_it_starts_and_when_it_ends_only(tmp_path):
    bodies = replay(quiet(hours=2, seed=7), tmp_path)
    engine = AlertEngine(load_rules())
    for body in bodies[:6]:
        message = read_message(body.encode(), {})
        engine.feed("dev1", {}, message, message_time(message, 0.0))
    last = engine.devices["dev1"].last_time
    assert engine.check_silence(last + 1800) == []          # 3 windows of 600 s: not yet
    assert [a.rule for a in engine.check_silence(last + 1801)] == ["silence"]
    assert engine.check_silence(last + 5000) == []          # still silent: no news
    message = read_message(bodies[-1].encode(), {})
    back = engine.feed("dev1", {}, message, message_time(message, 0.0))
    assert [a.rule for a in back] == ["silence"]
    assert back[0].evidence[0]["next_message"] is not None


def test_a_package_removed_is_raised_once_the_next_report_begins(tmp_path):
    # A report can span messages, so a missing package is certain only when the next report
    # starts: zlib, gone from the second report, is raised when the third arrives.
    def sbom(names, t):
        return periodic("SBoM", [{"name": n, "version": "1.0", "vendor": "debian"} for n in names],
                        t)
    first = sbom(["openssl", "zlib"], START)
    second = sbom(["openssl"], START + 86400)
    assert of_rule(evaluate(first + second), "sbom-change") == []
    alerts = of_rule(evaluate(first + second + sbom(["openssl"], START + 2 * 86400)),
                     "sbom-change")
    assert [(a["key"], a["evidence"][0]["change"]) for a in alerts] == [("zlib", "removed")]
    assert "zlib removed: 1.0 -> (none)" in alerts[0]["title"]

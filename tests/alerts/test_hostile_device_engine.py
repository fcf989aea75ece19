"""One hostile device against the alert engine: its dates cannot move another device's clock,
its alert lines per hour of arrival are capped however it dates them, and the keys it can make
the rules remember are capped and counted; an honest device's alerts stay as they were."""
import json

from host_sim.cloud.alerts import engine as engine_module
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.hub_events import HubEvent
from host_sim.cloud.alerts.messages import format_time, message_time, read_message
from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.alerts.run import Evaluation
from host_sim.cloud.alerts.sources import StoredMessage

from alert_helpers import START, login_failed, merged, quiet, replay

PROPERTIES = {"$.ct": "application/json"}
LIMIT = 50          # the bound: lines of one device per hour of arrival


def _message(name, items, stamp):
    return {"Events": [{"Name": name, "Category": "Triggered", "TimestampUTC": stamp,
                        "Payload": items}]}


def _live(engine, device, bodies, skew=0.0):
    """BODIES fed as a live device sends them: each arrives at its own time (+ SKEW)."""
    for body in bodies:
        message = read_message(body.encode(), PROPERTIES)
        engine.feed(device, PROPERTIES, message, message_time(message, 0.0) + skew)


def _lines(engine, device):
    return [a for a in engine.alerts.values() if a.device == device]


def test_a_message_dated_a_day_ahead_gives_no_other_device_a_silence(tmp_path):
    engine = AlertEngine(load_rules(None))
    honest = replay(quiet(hours=2, seed=3), tmp_path, name="honest.jsonl")
    _live(engine, "honest", honest)
    now = engine.devices["honest"].last_arrival
    ahead = _message("DroppedEvents", [], format_time(now + 86400))
    engine.feed("hostile", {}, ahead, now)
    assert engine.check_silence() == []
    assert engine.fleet_now(now) == now
    assert not [a for a in engine.alerts.values() if a.rule == "silence"]
    # the hub's clock, not the device's, says when the honest device went quiet
    silent = engine.check_silence(now + 3 * 600 + 1)
    assert [a.device for a in silent] == ["honest"]
    assert silent[0].first == engine.devices["honest"].last_time


def test_a_message_without_a_date_it_may_keep_opens_no_silence_on_its_device(tmp_path):
    """A device's days-old dates, then a message whose only date the reader refuses, then its
    next: the dateless message is placed on the device's own clock, not the hub's present."""
    engine = AlertEngine(load_rules(None))
    stamp = "2026-01-01T00:00:%02d.000Z"
    now = START + 300 * 86400       # the hub's present, long after the device's dates
    bodies = [_message("DroppedEvents", [], stamp % 0),
              _message("DroppedEvents", [], "9999-12-31T23:59:59-14:00"),
              _message("DroppedEvents", [], stamp % 2)]
    for n, message in enumerate(bodies):
        message = read_message(json.dumps(message).encode(), PROPERTIES)
        engine.feed("dev", PROPERTIES, message, now + n)
    assert engine.check_silence(now + 3) == []
    assert not [a for a in engine.alerts.values() if a.rule == "silence"]


def test_dates_at_the_ends_of_time_are_clamped_for_display():
    engine = AlertEngine(load_rules(None))
    for n, stamp in enumerate(("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")):
        items = [{"collector": "c%d" % n, "dropped": 5, "evicted": 0, "cache_size": 1,
                  "timestamp": stamp}]
        engine.feed("hostile", {}, _message("DroppedEvents", items, stamp), START + n)
    shown = [a.as_dict() for a in engine.sorted_alerts()]
    # out of range: clamped, or (a reader that refuses such a time) the time of arrival
    assert sorted(a["first"][:4] for a in shown if a["rule"] == "dropped-events") in (
        ["1970", "9999"], ["2026", "2026"])
    assert engine_module.clamp_time(-62135647200.0) == 0.0
    assert format_time(engine_module.clamp_time(253402351199.0)) == "9999-12-31T23:59:59.000Z"
    engine.check_silence(START + 10 ** 6)
    json.dumps([a.as_dict() for a in engine.sorted_alerts()], allow_nan=False)


def _collectors(n, prefix="c"):
    return [{"collector": "%s%04d" % (prefix, i), "dropped": 1, "evicted": 0, "cache_size": 8}
            for i in range(n)]


def test_400_dropped_events_collectors_fold_into_a_count_and_a_high_alert_stays(tmp_path):
    engine = AlertEngine(load_rules(None))
    honest = replay(merged(quiet(hours=2, seed=3), [login_failed(START + 5400 + 5 * i,
                                                                   "203.0.113.9")
                                                     for i in range(10)]), tmp_path)
    _live(engine, "honest", honest)
    now = engine.devices["honest"].last_arrival
    engine.feed("hostile", {}, _message("DroppedEvents", _collectors(400), format_time(now)), now)
    lines = _lines(engine, "hostile")
    assert len(lines) <= LIMIT
    folded = [a for a in lines if a.rule == engine_module.BUDGET_RULE]
    assert sum(a.count for a in lines if a.rule == "dropped-events") + sum(
        a.count for a in folded) == 400
    assert [a.severity for a in folded] == ["Low"]
    assert "dropped-events 375" in folded[0].title
    # a real brute force of the same device, after the flood, in the same hour: still a High line
    failures = [{"timestamp": format_time(now + i), "operation": "LoginFailed",
                 "remote_address": "198.51.100.4", "user_name": "root", "executable": "sshd"}
                for i in range(10)]
    engine.feed("hostile", {}, _message("Login", failures, format_time(now + 10)), now + 10)
    high = [a for a in _lines(engine, "hostile") if a.severity == "High"]
    assert high and "198.51.100.4" in (high[0].key + high[0].title)
    assert len(_lines(engine, "hostile")) <= LIMIT
    assert [a.rule for a in _lines(engine, "honest") if a.severity == "High"] == ["brute-force"]


def test_a_device_that_varies_its_dates_stays_within_the_budget_of_its_arrival_hour():
    engine = AlertEngine(load_rules(None))
    now = START + 7200
    for n in range(40):
        stamp = format_time(START - 86400 * 365 * n + 3600 * n)   # every message another hour
        engine.feed("hostile", {}, _message("DroppedEvents", _collectors(20, "m%d-" % n), stamp),
                    now + n)
    lines = _lines(engine, "hostile")
    assert len(lines) <= LIMIT
    assert sum(a.count for a in lines) == 800
    assert engine.devices["hostile"].detect["capped"]["alerts past the hourly budget"] == 800 - len(
        [a for a in lines if a.rule != engine_module.BUDGET_RULE])
    # the next hour of arrival is a new budget
    engine.feed("hostile", {}, _message("DroppedEvents", _collectors(1, "next"), format_time(now)),
                now + 3600)
    assert len(_lines(engine, "hostile")) == len(lines) + 1


def test_hub_records_of_one_device_are_one_line_per_rule_and_hour():
    engine = AlertEngine(load_rules(None))
    hour = int(START)
    for n in range(300):
        event = HubEvent(n, "victim", "invalid-sas-signature", hour, START, START + n, n + 1,
                         ["192.0.2.%d" % (n % 250)], "bad signature")
        engine.feed_hub_event(event)
    assert len(_lines(engine, "victim")) == 1
    assert _lines(engine, "victim")[0].count == 300


def test_the_keys_a_device_can_make_the_rules_remember_are_capped_and_counted(monkeypatch):
    monkeypatch.setattr(engine_module, "MAX_RULE_KEYS", 100)
    engine = AlertEngine(load_rules(None))
    now = START
    processes = [{"timestamp": format_time(now), "commandline": "/bin/x%d" % i, "user_id": 0,
                  "process_id": i, "parent_process_id": 1, "hit_count": 1}
                 for i in range(300)]
    engine.feed("hostile", {}, _message("ProcessCreate", processes, format_time(now)), now)
    failures = [{"timestamp": format_time(now), "operation": "LoginFailed",
                 "remote_address": "10.0.%d.%d" % (i // 250, i % 250)} for i in range(300)]
    engine.feed("hostile", {}, _message("Login", failures, format_time(now)), now)
    gaps = 0
    for i in range(1, 400):     # window spacings of every length
        gaps += i
        engine.feed("hostile", {}, _message("ProcessCreate", [], format_time(now + gaps)), now)
    for boot in range(100):
        engine.feed("hostile", {"$.mid": "boot%d-1" % boot}, _message("ProcessCreate", [],
                                                                    format_time(now)), now)
    state = engine.devices["hostile"]
    assert len(state.seen["new-process"]) == 100
    assert len(state.bursts["brute-force"]) == 100
    assert len(state.gaps) == engine_module.MAX_GAPS
    assert len(state.sequences) == engine_module.MAX_BOOTS
    capped = state.detect["capped"]
    assert capped["new-process values"] == 200 and capped["brute-force keys"] == 200
    assert capped["window spacings"] == 399 - engine_module.MAX_GAPS
    assert capped["boots followed"] == 100 - engine_module.MAX_BOOTS
    restored = AlertEngine(load_rules(None))
    restored.import_device("hostile", json.loads(json.dumps(engine.export_device("hostile"))))
    assert restored.devices["hostile"].detect["capped"] == capped
    folded = {ident: a.as_dict() for ident, a in engine.alerts.items()
              if ident[1] == engine_module.BUDGET_RULE}
    assert folded and {ident: a.as_dict() for ident, a in restored.alerts.items()
                       if ident[1] == engine_module.BUDGET_RULE} == folded


def test_a_state_of_version_1_is_read_and_its_budget_starts_again(tmp_path):
    engine = AlertEngine(load_rules(None))
    _live(engine, "dev1", replay(quiet(hours=1, seed=2), tmp_path))
    state = json.loads(json.dumps(engine.export_device("dev1")))
    state["version"] = 1
    state["device"]["detect"]["alert_budget"] = [int(START // 3600), 49]
    restored = AlertEngine(load_rules(None))
    restored.import_device("dev1", state)
    assert "alert_budget" not in restored.devices["dev1"].detect
    assert restored.export_device("dev1")["version"] == engine_module.STATE_VERSION


def test_fifty_lines_an_hour_with_the_readers_malformed_messages_line(tmp_path):
    evaluation = Evaluation(load_rules(None))
    now = START + 3600
    stored = [StoredMessage(n, "hostile", now + n, PROPERTIES, body) for n, body in enumerate(
        [b"[" * 5000, b"not json"]
        + [json.dumps(_message("DroppedEvents", _collectors(400, "m%d-" % n),
                               format_time(START + n))).encode() for n in range(20)]
        + [json.dumps(_message("ProcessCreate", [{"commandline": "/tmp/x%d" % i,
                                                  "timestamp": format_time(START)}
                                                 for i in range(100)],
                               format_time(START))).encode()])]
    for message in stored:
        evaluation.feed(message)
    evaluation.engine.check_silence(now + 10 ** 6)
    lines = _lines(evaluation.engine, "hostile")
    assert len(lines) <= LIMIT
    assert "malformed-messages" in {a.rule for a in lines}


def test_keys_of_any_type_and_length_are_bounded_text():
    engine = AlertEngine(load_rules(None))
    now = START
    items = [{"commandline": "x" * 100000, "timestamp": format_time(now)},
             {"commandline": ["sh", "-c"], "timestamp": format_time(now)},
             {"commandline": {"a": [1]}, "timestamp": format_time(now)}]
    engine.feed("hostile", {}, _message("ProcessCreate", items, format_time(now)), now)
    engine.feed("hostile", {}, _message("ProcessCreate", items, format_time(now)), now)
    seen = engine.devices["hostile"].seen["new-process"]
    assert len(seen) == 3
    assert max(len(v) for key in seen for v in key) == engine_module.MAX_KEY_TEXT
    assert all(len(a.key) <= engine_module.MAX_KEY_TEXT for a in engine.alerts.values())
    json.dumps(engine.export_device("hostile"))

"""What the rules learned of one device, as JSON-safe data (AlertEngine.export_device and
import_device, kept by the cloud store): a device restored from it and fed the rest of its
history raises exactly what one engine fed the whole history raises."""
import json
import subprocess

from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.messages import read_message
from host_sim.cloud.alerts.rules import load_rules

from alert_helpers import START, login_failed, merged, periodic, quiet, replay, rules_file
from hub_replays import MICROAGENT

PROPERTIES = {"$.ct": "application/json"}


def _feed(engine, bodies, device="dev1"):
    for body in bodies:
        engine.feed(device, PROPERTIES, read_message(body.encode(), PROPERTIES), 0.0)


def _alerts(engine, now=None):
    engine.check_silence(now)
    return [a.as_dict() for a in engine.sorted_alerts()]


def _day(tmp_path):
    """A day with something for every kind of state: a learning hour, a brute force split by
    the restart, new values after learning, and SBoM reports on both sides of it."""
    burst = [login_failed(START + 5 * 3600 - 27 + 10 * i, "203.0.113.9") for i in range(10)]
    odd = [{"kind": "process", "t": START + 6 * 3600, "type": "exec", "pid": 901, "ppid": 1,
            "uid": 0, "commandline": "/tmp/.x/miner"}]
    bodies = replay(merged(quiet(hours=8), burst, odd), tmp_path)
    packages = [{"name": "openssl", "version": "3.0.1", "vendor": "debian"},
                {"name": "zlib", "version": "1.2", "vendor": "debian"}]
    bodies[1:1] = periodic("SBoM", packages, START + 60)
    bodies += periodic("SBoM", packages[:1], START + 7 * 3600)
    bodies += periodic("SBoM", [dict(packages[0], version="3.0.9")], START + 8 * 3600)
    return bodies


def _through_json(engine, device):
    return json.loads(json.dumps(engine.export_device(device), allow_nan=False))


def test_a_device_restored_at_any_message_raises_what_the_uninterrupted_run_raises(tmp_path):
    rules = load_rules(rules_file(tmp_path, learning_s=3600))
    bodies = _day(tmp_path)
    whole = AlertEngine(rules)
    _feed(whole, bodies)
    expected = _alerts(whole)
    assert {a["rule"] for a in expected} >= {"brute-force", "new-process", "sbom-change"}
    # the burst's 10 logins straddle a window's end: neither message alone holds the 8 wanted
    halves = [i for i, body in enumerate(bodies) if "203.0.113.9" in body]
    assert len(halves) == 2 and all(bodies[i].count("203.0.113.9") < 8 for i in halves)
    for cut in range(1, len(bodies)):
        first = AlertEngine(rules)
        _feed(first, bodies[:cut])
        second = AlertEngine(rules)
        second.import_device("dev1", _through_json(first, "dev1"))
        _feed(second, bodies[cut:])
        assert _alerts(second) == expected, "restored after message %d" % cut
    # without the state, a restart in the middle of the burst would learn again and miss it
    fresh = AlertEngine(rules)
    _feed(fresh, bodies[halves[0] + 1:])
    assert {a["rule"] for a in _alerts(fresh)} & {"brute-force", "new-process"} == set()


def test_devices_restore_one_by_one_and_forget_leaves_the_others(tmp_path):
    rules = load_rules(rules_file(tmp_path, learning_s=3600))
    bodies = _day(tmp_path)
    quiet_bodies = replay(quiet(hours=8, seed=2), tmp_path, name="other.jsonl")
    whole = AlertEngine(rules)
    _feed(whole, bodies, "a")
    _feed(whole, quiet_bodies, "b")
    expected = _alerts(whole, now=START + 12 * 3600)
    assert any(a["device"] == "b" and a["rule"] == "silence" for a in expected)
    first = AlertEngine(rules)
    _feed(first, bodies[:20], "a")
    _feed(first, quiet_bodies[:20], "b")
    states = {device: _through_json(first, device) for device in ("a", "b")}
    first.forget_device("a")
    assert set(first.devices) == {"b"} and all(ident[0] == "b" for ident in first.alerts)
    second = AlertEngine(rules)
    for device, state in states.items():
        second.import_device(device, state)
    _feed(second, bodies[20:], "a")
    _feed(second, quiet_bodies[20:], "b")
    assert _alerts(second, now=START + 12 * 3600) == expected
    assert second.export_device("nobody") is None


def test_alerts_of_a_rule_that_is_gone_are_dropped_and_damage_is_a_value_error(tmp_path):
    engine = AlertEngine(load_rules(None))
    _feed(engine, replay(merged(quiet(hours=1), [login_failed(START + 600 + i, "198.51.100.7")
                                                  for i in range(10)]), tmp_path))
    assert any(a.rule == "brute-force" for a in engine.alerts.values())
    state = _through_json(engine, "dev1")
    without = tmp_path / "rules.json"
    without.write_text('{"rules": [{"id": "brute-force", "enabled": false}]}')
    restored = AlertEngine(load_rules(str(without)))
    restored.import_device("dev1", state)
    assert "dev1" in restored.devices and restored.alerts == {}
    for damaged in ({"version": 99}, dict(state, device={"first_time": 0}), "text"):
        try:
            AlertEngine(load_rules(None)).import_device("dev1", damaged)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % (damaged,))


def test_state_is_gone_use_store(tmp_path):
    done = subprocess.run([MICROAGENT, "alerts", "--broker", "mqtt://127.0.0.1:1", "--state",
                           str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("microagent: error: --state is gone: use --store DSN (what the "
                                   "rules learned and the alerts are kept in the cloud store)")

"""`alerts --broker --state FILE`: a follower that restarts carries on where it stopped, and
the state file is guarded (host_sim/cloud/alerts/state.py)."""
import os
import pickle
import stat
import subprocess

import pytest

from host_sim.cloud.alerts import state
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.messages import read_message
from host_sim.cloud.alerts.rules import load_rules

from alert_helpers import START, login_failed, merged, periodic, quiet, replay, rules_file
from hub_replays import MICROAGENT

PROPERTIES = {"$.ct": "application/json"}


def _feed(engine, bodies):
    for body in bodies:
        engine.feed("dev1", PROPERTIES, read_message(body.encode(), PROPERTIES), 0.0)


def _alerts(engine):
    engine.check_silence()
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


def test_a_restart_through_the_state_file_changes_no_alert(tmp_path):
    rules = load_rules(rules_file(tmp_path, learning_s=3600))
    bodies = _day(tmp_path)
    whole = AlertEngine(rules)
    _feed(whole, bodies)
    expected = _alerts(whole)
    assert {a["rule"] for a in expected} >= {"brute-force", "new-process", "sbom-change"}
    # Stopped in the middle of the burst: its 10 logins in 90 s straddle a window's end, and
    # neither message alone holds the 8 the rule wants.
    halves = [i for i, body in enumerate(bodies) if "203.0.113.9" in body]
    assert len(halves) == 2 and all(bodies[i].count("203.0.113.9") < 8 for i in halves)
    middle = halves[0] + 1
    first = AlertEngine(rules)
    _feed(first, bodies[:middle])
    path = str(tmp_path / "state")
    state.save(path, first)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = AlertEngine(rules)
    assert state.load(path, second)
    _feed(second, bodies[middle:])
    assert _alerts(second) == expected
    # Without the state, the restarted follower would learn again (no new process) and see
    # only half of the burst.
    fresh = AlertEngine(rules)
    _feed(fresh, bodies[middle:])
    assert {a["rule"] for a in _alerts(fresh)} & {"brute-force", "new-process"} == set()


def test_alerts_of_a_rule_that_is_gone_are_dropped(tmp_path):
    engine = AlertEngine(load_rules(None))
    _feed(engine, replay(merged(quiet(hours=1), [login_failed(START + 600 + i, "198.51.100.7")
                                                  for i in range(10)]), tmp_path))
    assert any(a.rule == "brute-force" for a in engine.alerts.values())
    path = str(tmp_path / "state")
    state.save(path, engine)
    without = tmp_path / "rules.json"
    without.write_text('{"rules": [{"id": "brute-force", "enabled": false}]}')
    restored = AlertEngine(load_rules(str(without)))
    assert state.load(path, restored)
    assert not any(a.rule == "brute-force" for a in restored.alerts.values())


def test_a_missing_file_is_a_first_start(tmp_path):
    assert state.load(str(tmp_path / "none"), AlertEngine(load_rules(None))) is False


def _write_state(path, kind):
    if kind == "garbage":
        path.write_bytes(b"not a pickle")
    elif kind == "foreign":
        path.write_bytes(pickle.dumps({"format": "something else"}))
    else:  # a good state that others may write to
        state.save(str(path), AlertEngine(load_rules(None)))
        os.chmod(path, 0o622)


@pytest.mark.parametrize("kind,error", [
    ("garbage", "not a microagent alert state (UnpicklingError)"),
    ("foreign", "not a microagent alert state"),
    ("writable", "must be yours and writable by you alone"),
])
def test_a_bad_state_file_is_one_line_and_exit_2(tmp_path, kind, error):
    path = tmp_path / "state"
    _write_state(path, kind)
    before = path.read_bytes()
    done = subprocess.run([MICROAGENT, "alerts", "--broker", "mqtt://127.0.0.1:1", "--state",
                           str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("microagent: error: --state %s: " % path), done.stderr
    assert error in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before  # a failed start never overwrites it


def test_state_goes_with_the_broker_only(tmp_path):
    done = subprocess.run([MICROAGENT, "alerts", "--data", str(tmp_path), "--state",
                           str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--state goes with --broker" in done.stderr

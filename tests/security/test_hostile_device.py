"""Issue 24's acceptance test, "How we will know", first bullet, literally: one honest device
with a brute force and one hostile device sending typed poison, dates at the ends of time,
control characters, 400 distinct DroppedEvents collectors, a shared-value CBOR bomb (and a
string-reference one) and CBOR NaN, both through the real hub emulator. Under a 2 GB address-space cap, `alerts --json` exits 0
within 90 s with the honest brute-force alert and no silence for the honest device, at most 50
lines for the hostile one; `alerts` prints no control characters; `hub messages --json` is
strict JSON; the console serves both device pages.

The oracle is the attack itself: 15 failed logins from one address within 70 s (and one
connection to a new destination after the learning hour) on the honest device are what it must
be alerted on, and nothing else; nothing here is computed by the alert engine."""
import json
import os
import resource
import subprocess
import sys
import urllib.request

import pytest

from hostile_device import (control_characters, distinct_collectors, not_finite, send,
                            shared_value_bomb, string_reference_bomb, typed_poison)
from test_terminal_safety import TERMINAL_CONTROL

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "alerts"))
from hub_replays import MICROAGENT, Lines, attacked_trace, replay_to_hub, write_rules  # noqa: E402
from hub_emulator.process import HubProcess  # noqa: E402

HONEST, HOSTILE = "honest", "hostile"
ATTACKER = "203.0.113.9"            # attacked_trace: 15 failed logins from it in 70 s at 02:00
MINER = "198.51.100.66 3333"        # and one connection to it at 03:00, after the learning hour
ADDRESS_SPACE = 2 << 30
SECONDS = 90


def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _run(*args):
    """MICROAGENT ARGS under the 2 GB cap; fails past SECONDS (TimeoutExpired) or on a
    traceback."""
    done = subprocess.run([MICROAGENT] + [str(a) for a in args], capture_output=True,
                          timeout=SECONDS, preexec_fn=_capped)
    stderr = done.stderr.decode("utf-8", errors="replace")
    assert "Traceback" not in stderr, stderr[-3000:]
    return done, stderr


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """The hub after both devices sent: half the hostile messages before the honest device's
    replay (a poison stored first must not stop what comes after), the rest after it."""
    tmp = tmp_path_factory.mktemp("hostile")
    hub = HubProcess(tmp / "hub")
    hostile = (typed_poison() + [control_characters(), distinct_collectors(400),
                                 shared_value_bomb(), string_reference_bomb()] + not_finite())
    with hub:
        hub.add_device(HOSTILE)
        send(hub, HOSTILE, hostile[:len(hostile) // 2])
        replay_to_hub(hub, HONEST, attacked_trace(tmp / "honest.jsonl"), tmp)
        send(hub, HOSTILE, hostile[len(hostile) // 2:])
        stored = {HONEST: len(hub.messages(HONEST)), HOSTILE: len(hub.messages(HOSTILE))}
    assert stored[HOSTILE] == len(hostile)   # the hub stores whatever bytes a device sends
    return hub, write_rules(tmp / "hour.json", 3600), stored


def _strict(line):
    def refuse(name):
        raise AssertionError("%s in JSON output: %s" % (name, line[:200]))
    return json.loads(line, parse_constant=refuse)


def test_alerts_json_keeps_the_honest_alerts_and_bounds_the_hostile_ones(fleet):
    hub, rules, _ = fleet
    done, stderr = _run("alerts", "--data", hub.data_dir, "--rules", rules, "--json")
    assert done.returncode == 0, stderr[-3000:]
    records = [_strict(line) for line in done.stdout.decode("utf-8").splitlines()]
    honest = sorted((r["rule"], r["key"]) for r in records
                    if r["device"] == HONEST and r["kind"] == "alert")
    assert honest == [("brute-force", ATTACKER), ("new-outbound-destination", MINER)]
    assert [r for r in records if r["device"] == HONEST and r["rule"] == "silence"] == []
    brute = [r for r in records if r["device"] == HONEST and r["rule"] == "brute-force"]
    assert brute[0]["count"] == 15 and brute[0]["severity"] == "High"
    hostile = [r for r in records if r["device"] == HOSTILE]
    assert 1 <= len(hostile) <= 50, "%d lines for the hostile device" % len(hostile)


def test_alerts_table_prints_no_control_characters(fleet):
    hub, rules, _ = fleet
    done, stderr = _run("alerts", "--data", hub.data_dir, "--rules", rules)
    assert done.returncode == 0, stderr[-3000:]
    for stream in (done.stdout, done.stderr):
        found = TERMINAL_CONTROL.search(stream)
        assert found is None, stream[max(0, found.start() - 80):found.end() + 80]
    rows = done.stdout.decode("utf-8").splitlines()
    assert any(row.split()[:3] == ["High", HONEST, "brute-force"] for row in rows)


def test_hub_messages_json_is_strict_json(fleet):
    hub, _, stored = fleet
    done, stderr = _run("hub", "messages", "--data", hub.data_dir, "--json")
    assert done.returncode == 0, stderr[-3000:]
    listed = [_strict(line) for line in done.stdout.decode("utf-8").splitlines()]
    assert len([m for m in listed if m["device"] == HONEST]) == stored[HONEST]
    # the two bombs, the NaN and the Infinity are named on stderr, one line each, not listed
    assert len([m for m in listed if m["device"] == HOSTILE]) <= stored[HOSTILE] - 4
    assert len([line for line in stderr.splitlines() if "skipped" in line]) >= 4


@pytest.mark.parametrize("bomb", [shared_value_bomb, string_reference_bomb])
def test_decode_refuses_a_bomb_in_one_line(bomb, tmp_path):
    body = tmp_path / "bomb.cbor"
    body.write_bytes(bomb())
    done, stderr = _run("decode", body)
    assert done.returncode == 1 and done.stdout == b""
    assert len(stderr.splitlines()) == 1 and str(body) in stderr


def test_the_console_serves_both_device_pages(fleet):
    hub, rules, _ = fleet
    proc = subprocess.Popen([MICROAGENT, "console", "--data", hub.data_dir, "--port", "0",
                             "--rules", rules], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_capped)
    try:
        try:
            line = Lines(proc.stdout).wait_for(lambda text: text.startswith("console: http://"),
                                               SECONDS)
        except AssertionError as exc:
            proc.wait(timeout=SECONDS)
            raise AssertionError("%s; stderr: %s" % (exc, proc.stderr.read()[-3000:]))
        url = line.split()[1]
        for page in ("", "device?id=" + HONEST, "device?id=" + HOSTILE):
            with urllib.request.urlopen(url + page, timeout=SECONDS) as response:
                assert response.status == 200
                html = response.read().decode("utf-8")
            assert "brute-force" in html or page.endswith(HOSTILE)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

"""`microagent alerts` on what real replays delivered to the hub emulator over TLS, following it
as messages arrive, and on a real mosquitto the messages are forwarded to."""
import json
import os
import re
import signal
import stat
import subprocess
import sys

import pytest

from host_sim.cloud.store import open_store

from hub_replays import (ATTACKER, MICROAGENT, QUIET_SAMPLE, REPO, Lines, attacked_trace,
                         replay_to_hub, write_rules)

sys.path.insert(0, os.path.join(REPO, "tools"))
from mosquitto_broker import Mosquitto  # noqa: E402
from hub_emulator.process import HubProcess  # noqa: E402


@pytest.fixture(scope="module")
def filled_hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("alerts-hub")
    hub = HubProcess(tmp / "hub", port=0, plain_port=None)
    with hub:
        replay_to_hub(hub, "attacked", attacked_trace(tmp / "attacked.jsonl"), tmp)
        replay_to_hub(hub, "quiet-fw", QUIET_SAMPLE, tmp, engine="firmware")
        replay_to_hub(hub, "quiet-host", QUIET_SAMPLE, tmp)
        yield hub, tmp


def alerts(hub_dir, *args):
    done = subprocess.run([MICROAGENT, "alerts", "--data", str(hub_dir)] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_replayed_burst_is_one_brute_force_alert_and_the_quiet_sample_none(filled_hub):
    hub, tmp = filled_hub
    rules = write_rules(tmp / "hour.json", 3600)
    found = [json.loads(line) for line in alerts(hub.data_dir, "--json", "--rules", rules).stdout.splitlines()]
    found = [a for a in found if a["kind"] == "alert"]   # recommendations: test_recommendations.py
    brute = [a for a in found if a["rule"] == "brute-force"]
    assert [(a["device"], a["key"], a["count"]) for a in brute] == [("attacked", ATTACKER, 15)]
    assert [(a["device"], a["key"]) for a in found if a["rule"] == "new-outbound-destination"] == [
        ("attacked", "198.51.100.66 3333")]
    assert [a for a in found if a["device"] != "attacked"] == []
    assert {a["rule"] for a in found} == {"brute-force", "new-outbound-destination"}
    for alert in found:
        assert set(alert) >= {"device", "rule", "severity", "first", "last", "evidence", "what_to_do"}


def test_firmware_message_ids_are_the_sequence_the_outbox_rule_reads(filled_hub):
    """The outbox-loss rule reads BOOT-SEQ ids: the firmware replay's ids are that, gapless
    (a lossless delivery raises nothing), and the host agent's are not (no order to read)."""
    hub, _ = filled_hub
    firmware_ids = [m["properties"]["$.mid"] for m in hub.messages("quiet-fw")]
    boots = {mid.rpartition("-")[0] for mid in firmware_ids}
    assert len(boots) == 1 and all(re.fullmatch(r"[0-9a-f]{8}-\d+", mid) for mid in firmware_ids)
    numbers = sorted(set(int(mid.rpartition("-")[2]) for mid in firmware_ids))
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) and len(numbers) > 20
    host_ids = [m["properties"]["$.mid"] for m in hub.messages("quiet-host")]
    assert all(re.fullmatch(r"[0-9a-f]{32}", mid) for mid in host_ids)


def test_table_output(filled_hub):
    hub, _ = filled_hub
    out = alerts(hub.data_dir).stdout.splitlines()
    assert out[0].split()[:4] == ["SEVERITY", "DEVICE", "RULE", "FIRST"]
    assert any("brute-force" in line and ATTACKER in line for line in out)
    assert out[-1].startswith("1 alert from ") and out[-1].endswith(" of 3 devices")


def test_bad_rules_file_is_one_line_naming_file_and_line(filled_hub, tmp_path):
    hub, _ = filled_hub
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [\n  {"id": "brute-force", "count": 0}\n]}\n')
    done = subprocess.run([MICROAGENT, "alerts", "--data", str(hub.data_dir), "--rules", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == ("microagent: error: rules file %s: rule 'brute-force': count "
                                   "must be an integer >= 1" % bad)
    bad.write_text('{"rules": [\n  {"id": "x",, }\n]}\n')
    done = subprocess.run([MICROAGENT, "alerts", "--data", str(hub.data_dir), "--rules", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "line 2" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([MICROAGENT, "alerts", "--data", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "holds no hub data" in done.stderr


def test_follow_raises_alerts_as_messages_arrive(tmp_path):
    hub = HubProcess(tmp_path / "hub", port=0, plain_port=None)
    with hub:
        hub.add_device("placeholder")  # the store exists before the consumer opens it
        follower = subprocess.Popen([MICROAGENT, "alerts", "--data", str(hub.data_dir), "--follow",
                                     "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        try:
            Lines(follower.stderr).wait_for(lambda line: "following" in line, 30)
            replay_to_hub(hub, "attacked", attacked_trace(tmp_path / "attacked.jsonl"), tmp_path)
            line = Lines(follower.stdout).wait_for(lambda line: '"brute-force"' in line, 60)
            alert = json.loads(line)
            assert alert["status"] == "new" and alert["key"] == ATTACKER
            assert alert["device"] == "attacked"
        finally:
            follower.send_signal(signal.SIGTERM)
            assert follower.wait(timeout=30) == 0


def test_rules_run_on_a_mosquitto_the_messages_are_forwarded_to(tmp_path):
    broker = Mosquitto(str(tmp_path), {"device": "device-pass", "alerts": "alerts pass"}).start()
    try:
        env = dict(os.environ,
                   MICROAGENT_ALERTS_BROKER="mqtts://alerts:alerts%%20pass@127.0.0.1:%d" % broker.port)
        saved = tmp_path / "cloud.db"
        consumer = subprocess.Popen([MICROAGENT, "alerts", "--broker", "--ca", broker.certs["ca.pem"],
                                     "--json", "--store", str(saved)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env)
        try:
            Lines(consumer.stderr).wait_for(lambda line: "subscribed to devices/+/messages" in line, 30)
            trace = attacked_trace(tmp_path / "attacked.jsonl")
            # The device side takes its URL (and password) from the environment too; with
            # --broker, a connection string in the environment is not used.
            sent = subprocess.run(
                [MICROAGENT, "replay", str(trace), "--engine", "host", "--window", "600",
                 "--broker", "--ca", broker.certs["ca.pem"], "--outbox",
                 str(tmp_path / "outbox.db")],
                capture_output=True, text=True, timeout=120,
                env=dict(os.environ,
                         MICROAGENT_BROKER="mqtts://device:device-pass@127.0.0.1:%d" % broker.port,
                         MICROAGENT_CONNECTION_STRING="HostName=unused.example;DeviceId=d;"
                                                      "SharedAccessKey=a2V5"))
            assert sent.returncode == 0, sent.stderr
            alert = json.loads(Lines(consumer.stdout).wait_for(lambda text: '"brute-force"' in text, 60))
            assert alert["key"] == ATTACKER and alert["count"] == 15
            assert alert["device"].startswith("microagent-")  # plain MQTT: the client id
        finally:
            consumer.send_signal(signal.SIGTERM)
            assert consumer.wait(timeout=30) == 0
        # What it learned and raised is in the store, the owner's alone, for the next start.
        assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
        store = open_store(str(saved))
        assert [(a["rule"], a["key"]) for a in store.alerts(rule="brute-force")] == [
            ("brute-force", ATTACKER)]
        assert store.device_row(alert["device"])["state"] is not None
        store.close()
    finally:
        broker.stop()


@pytest.mark.parametrize("args,env,error", [
    (["alerts", "--broker"], {}, "--broker needs a URL (or $MICROAGENT_ALERTS_BROKER)"),
    (["alerts", "--broker"], {"MICROAGENT_ALERTS_BROKER": "http://u:s3cret-pw@h"},
     "--broker: expected mqtt[s]://[user:password@]host[:port]"),
    (["alerts", "--broker", "--ca", "/no/such/ca.pem"],
     {"MICROAGENT_ALERTS_BROKER": "mqtts://u:s3cret-pw@127.0.0.1:1"}, "--ca /no/such/ca.pem: no such file"),
    (["alerts", "--broker"], {"MICROAGENT_ALERTS_BROKER": "mqtt://u:s3cret-pw@127.0.0.1:1"},
     "cannot connect to 127.0.0.1:1"),
    (["run", "--broker"], {}, "--broker needs a URL (or $MICROAGENT_BROKER)"),
    (["replay", QUIET_SAMPLE, "--engine", "host", "--broker"],
     {"MICROAGENT_BROKER": "http://u:s3cret-pw@h"},
     "--broker: scheme must be mqtt:// or mqtts://, not 'http'"),
    (["console", "--data", "/no/such/hub"], {}, "/no/such/hub holds no hub data"),
    (["console", "--data", "/no/such/hub", "--port", "70000"], {}, "--port must be in 0..65535"),
])
def test_usage_errors_are_one_line_without_the_password(args, env, error):
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("MICROAGENT_ALERTS_BROKER", "MICROAGENT_BROKER")}
    environment.update(env)
    done = subprocess.run([MICROAGENT] + args, capture_output=True, text=True, timeout=60,
                          env=environment)
    assert done.returncode == 2
    assert done.stderr.startswith("microagent: error: ") and error in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "s3cret" not in done.stderr

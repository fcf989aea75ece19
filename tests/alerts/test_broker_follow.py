"""`microagent alerts --broker` loses nothing across a restart (issue 24, finding 7): its
session on the broker (a real mosquitto) is persistent, so 8 failed logins sent while it is
down are delivered when it returns, and the brute-force alert is raised."""
import json
import os
import signal
import subprocess
import sys

import pytest

from alert_helpers import START, login_failed
from host_sim import tracegen
from hub_replays import ATTACKER, MICROAGENT, REPO, Lines

sys.path.insert(0, os.path.join(REPO, "tools"))
from mosquitto_broker import Mosquitto  # noqa: E402


@pytest.fixture
def broker(tmp_path):
    broker = Mosquitto(str(tmp_path), {"device": "device-pass", "alerts": "alerts pass"}).start()
    yield broker
    broker.stop()


def follower_env(broker):
    return dict(os.environ,
                MICROAGENT_ALERTS_BROKER="mqtts://alerts:alerts%%20pass@127.0.0.1:%d" % broker.port)


def start_follower(broker, *args):
    follower = subprocess.Popen([MICROAGENT, "alerts", "--broker", "--ca", broker.certs["ca.pem"], "--json"]
                                + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=follower_env(broker))
    stderr = Lines(follower.stderr)
    subscribed = stderr.wait_for(lambda line: "subscribed to devices/+/messages" in line, 30)
    stderr.wait_for(lambda line: "alerts: following" in line, 30)   # its SIGTERM handler is set
    return follower, Lines(follower.stdout), subscribed


def stop(follower):
    follower.send_signal(signal.SIGTERM)
    assert follower.wait(timeout=30) == 0


def send_failed_logins(broker, tmp_path, count=8):
    """COUNT failed logins from ATTACKER within 40 s, sent by the host agent to the broker."""
    trace = tmp_path / "logins.jsonl"
    tracegen.write([login_failed(START + 5 * i, ATTACKER) for i in range(count)], str(trace))
    sent = subprocess.run(
        [MICROAGENT, "replay", str(trace), "--engine", "host", "--window", "600", "--broker",
         "--ca", broker.certs["ca.pem"], "--outbox", str(tmp_path / "outbox.db")],
        capture_output=True, text=True, timeout=120,
        env=dict(os.environ, MICROAGENT_BROKER="mqtts://device:device-pass@127.0.0.1:%d" % broker.port,
                 MICROAGENT_CONNECTION_STRING="HostName=unused.example;DeviceId=d;SharedAccessKey=a2V5"))
    assert sent.returncode == 0, sent.stderr


@pytest.mark.parametrize("store", [False, True], ids=["in-memory", "into-store"])
def test_failed_logins_sent_while_the_follower_is_down_raise_the_alert(broker, tmp_path, store):
    args = ["--store", tmp_path / "cloud.db"] if store else []
    follower, _, first = start_follower(broker, *args)
    assert "a new session" in first
    stop(follower)

    send_failed_logins(broker, tmp_path)   # nobody is subscribed now: the broker queues them

    follower, stdout, again = start_follower(broker, *args)
    try:
        assert "its session resumed" in again
        alert = json.loads(stdout.wait_for(lambda line: '"brute-force"' in line, 60))
        assert (alert["rule"], alert["key"], alert["count"]) == ("brute-force", ATTACKER, 8)
    finally:
        stop(follower)


def test_two_followers_with_their_own_client_ids_each_get_every_message(broker, tmp_path):
    """--client-id: two followers of one topic on one machine each keep a session of their own."""
    followers = [start_follower(broker, "--client-id", name) for name in ("ops-a", "ops-b")]
    try:
        assert all(" as ops-" in subscribed for _, _, subscribed in followers)
        send_failed_logins(broker, tmp_path)
        for _, stdout, _ in followers:
            alert = json.loads(stdout.wait_for(lambda line: '"brute-force"' in line, 60))
            assert (alert["key"], alert["count"]) == (ATTACKER, 8)
    finally:
        for follower, _, _ in followers:
            stop(follower)

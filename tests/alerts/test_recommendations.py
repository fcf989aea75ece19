"""Recommendations from a real hub emulator: a host-engine replay with inbound connections,
Baseline and SBoM reports published by a paho device, a twin's reported properties made by
the agent's own Twin code, and two devices sharing one key; `microagent alerts --data` (batch
and --follow) and the console show them. The oracles are the trace, the stored message sizes
and hand-written expectations."""
import json
import re
import subprocess
import threading
import urllib.request

import pytest

from alert_helpers import START, merged, periodic, quiet
from host_sim import tracegen
from hub_emulator.process import HubProcess
from hub_replays import MICROAGENT, Lines, replay_to_hub
from microagent.config import Config
from microagent.session import Twin
from polling import wait_for

import paho.mqtt.client as mqtt

TIMEOUT = 20
EVENTS_TOPIC = "devices/%s/messages/events/%%24.ct=application%%2Fjson&%%24.ce=utf-8"
SCRIPT = "<script>alert(1)</script>"


def check(check_id, severity):
    return {"check_id": check_id, "check_result": "Fail", "error": "",
            "description": "check %s" % check_id, "remediation": "fix %s" % check_id,
            "severity": severity}


class Device:
    """A paho connection as DEVICE, publishing at QoS 1 (acknowledged once stored)."""

    def __init__(self, hub, device):
        self.device = device
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device,
                                  protocol=mqtt.MQTTv311)
        self.client.username_pw_set(hub.username(device), hub.token(device))
        self.client.tls_set(ca_certs=hub.ca)
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("127.0.0.1", hub.port, keepalive=60)
        self.client.loop_start()
        assert connected.wait(TIMEOUT)

    def send(self, bodies, topic=None):
        for body in bodies:
            info = self.client.publish(topic or EVENTS_TOPIC % self.device, body, qos=1)
            info.wait_for_publish(TIMEOUT)

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def inbound(t, protocol, port):
    return {"kind": "connection", "t": t, "protocol": protocol, "local_address": "10.0.0.1",
            "local_port": port, "remote_address": "10.0.3.7", "remote_port": 50001,
            "bytes_in": 100, "bytes_out": 50, "direction": "in"}


@pytest.fixture(scope="module")
def advised_hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("recommend-hub")
    hub = HubProcess(tmp / "hub", port=0, plain_port=None)
    with hub:
        events = merged(quiet(), [inbound(START + 600 + 60 * i, proto, port) for i, (proto, port)
                                  in enumerate([("TCP", 22), ("TCP", 8080), ("UDP", 5683),
                                                ("TCP", 22)])])
        trace = tmp / "gw.jsonl"
        tracegen.write(events, str(trace))
        replay_to_hub(hub, "gw", trace, tmp)
        gw = Device(hub, "gw")
        gw.send(periodic("Baseline", [check("CIS-1.1", "High"), check("CIS-2.2", "Medium"),
                                      check("CIS-3.3", "Medium")], START + 3 * 3600))
        gw.send(periodic("Baseline", [check("CIS-2.2", "Medium"), check(SCRIPT, "Low")],
                         START + 4 * 3600))
        # the agent's own twin code reports a refused cache size and a short message timeout
        twin = Twin(Config(maxima={"Process_CacheSize": 512}), log=lambda line: None)
        reported = twin.apply_desired(json.dumps({"Process_CacheSize": 4096,
                                                  "IothubModule_MessageTimeout": 200}).encode())
        gw.send([reported], topic="$iothub/twin/PATCH/properties/reported/?$rid=1")
        assert wait_for(lambda: "config" in hub.twin("gw")["reported"], TIMEOUT)
        gw.close()

        hub.add_device("big")
        big = Device(hub, "big")
        packages = [{"name": "package-%02d" % i, "version": "1.%d.0" % i, "vendor": "debian"}
                    for i in range(20)]
        for hour in range(12):
            bodies = periodic("SBoM", packages, START + hour * 3600)
            assert len(bodies) == 1 and 1024 < len(bodies[0].encode()) <= 4096
            big.send(bodies)
        big.close()

        hub.add_device("twin-a")
        hub.add_device("twin-b")
        hub.db.execute("UPDATE devices SET primary_key = ? WHERE id = 'twin-b'",
                       (hub.key("twin-a"),))
        yield hub, tmp, events


def recommendations(hub):
    done = subprocess.run([MICROAGENT, "alerts", "--data", hub.data_dir, "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert {line["kind"] for line in lines} <= {"alert", "recommendation"}
    return [line for line in lines if line["kind"] == "recommendation"]


def of(found, device, rule):
    return [r for r in found if r["device"] == device and r["rule"] == rule]


def test_recommendations_from_messages_and_the_hub(advised_hub):
    hub, _, events = advised_hub
    found = recommendations(hub)
    # open ports: the local ports of the trace's inbound connections, and nothing else
    listening = {"%s/%d" % (e["protocol"].lower(), e["local_port"]) for e in events
                 if e["kind"] == "connection" and e["direction"] == "in"}
    assert listening == {"tcp/22", "tcp/8080", "udp/5683"}
    ports = of(found, "gw", "open-ports")
    assert len(ports) == 1 and {p["port"] for p in ports[0]["evidence"]} == listening
    assert [p["connections"] for p in ports[0]["evidence"] if p["port"] == "tcp/22"] == [2]
    # the latest Baseline report only: 2 checks, its worst severity Medium
    baseline = of(found, "gw", "os-baseline-failed")
    assert len(baseline) == 1 and baseline[0]["count"] == 2
    assert baseline[0]["severity"] == "Medium"
    assert [c["check_id"] for c in baseline[0]["evidence"][1:]] == ["CIS-2.2", SCRIPT]
    assert baseline[0]["evidence"][0]["counts"] == {"Medium": 1, "Low": 1}
    # unutilized messages: the oracle is the stored sizes (the trace spans less than 24 h)
    for device in ("gw", "big"):
        sizes = [len(m["payload"]) for m in hub.messages(device)]
        small = sum(1 for s in sizes if s < 1024)
        expected = len(sizes) >= 10 and small >= 0.1 * len(sizes)
        found_here = of(found, device, "unutilized-messages")
        assert bool(found_here) == expected, (device, small, len(sizes))
        if found_here:
            assert found_here[0]["evidence"][0]["small"] == small
            assert "CollectorsCore_PriorityIntervals" in found_here[0]["what_to_do"]
    assert of(found, "gw", "unutilized-messages"), "the quiet host sends small windows"
    assert not of(found, "big", "unutilized-messages")
    # one key on two devices: a recommendation for each, naming the other
    assert [r["device"] for r in found if r["rule"] == "shared-credentials"] == ["twin-a", "twin-b"]
    assert of(found, "twin-a", "shared-credentials")[0]["evidence"] == [
        {"devices": ["twin-a", "twin-b"]}]
    # settings: the board refused the cache size; 200 min is below the Low window (1440 min)
    refused = of(found, "gw", "settings-refused")
    assert [e["key"] for e in refused[0]["evidence"]] == ["Process_CacheSize"]
    conflict = of(found, "gw", "settings-conflict")
    assert sorted(e["collector"] for e in conflict[0]["evidence"]) == [
        "Baseline", "SBoM", "SystemInformation"]
    assert not of(found, "big", "settings-conflict")
    assert hub.key("twin-a") not in json.dumps(found)
    # computed from state: the same ones again
    assert recommendations(hub) == found


def test_the_console_shows_them_escaped(advised_hub):
    hub, _, _ = advised_hub
    console = subprocess.Popen([MICROAGENT, "console", "--data", hub.data_dir, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://\S+/", Lines(console.stdout).wait_for(
            lambda text: "http://" in text, 120)).group(0)
        fleet = urllib.request.urlopen(url, timeout=60).read().decode()
        device = urllib.request.urlopen(url + "device?id=gw", timeout=60).read().decode()
    finally:
        console.terminate()
        console.wait(30)
    for page in (fleet, device):
        assert 'id="recommendations"' in page and "os-baseline-failed" in page
        assert SCRIPT not in page and "&lt;script&gt;" in page
    assert "shared-credentials" in fleet and "shared-credentials" not in device


def test_following_reports_a_recommendation_when_it_changes(advised_hub):
    """Last in this file: it sends the hub more reports."""
    hub, _, _ = advised_hub
    follower = subprocess.Popen([MICROAGENT, "alerts", "--data", hub.data_dir, "--follow",
                                 "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        lines = Lines(follower.stdout)

        def baseline(status):
            def wanted(text):
                record = json.loads(text)
                return (record["kind"] == "recommendation" and record["status"] == status
                        and record["rule"] == "os-baseline-failed")
            return wanted
        first = json.loads(lines.wait_for(baseline("new"), 60))
        assert first["count"] == 2
        gw = Device(hub, "gw")
        gw.send(periodic("Baseline", [check("CIS-9.%d" % i, "High") for i in range(3)],
                         START + 5 * 3600))
        gw.close()
        updated = json.loads(lines.wait_for(baseline("updated"), 60))
        assert updated["count"] == 3 and updated["severity"] == "High"
        # a shorter message timeout reported in the twin: the Medium windows conflict too
        gw = Device(hub, "gw")
        twin = Twin(Config(), log=lambda line: None)
        gw.send([twin.apply_desired(b'{"IothubModule_MessageTimeout": 100}')],
                topic="$iothub/twin/PATCH/properties/reported/?$rid=2")
        gw.close()
        conflict = json.loads(lines.wait_for(
            lambda text: '"settings-conflict"' in text and '"updated"' in text, 60))
        assert sorted(e["collector"] for e in conflict["evidence"]) == sorted(
            ["Process", "NetworkActivity", "Login", "SystemInformation", "Baseline", "SBoM"])
    finally:
        follower.terminate()
        follower.wait(30)


def test_the_store_holds_what_the_messages_recommend(advised_hub, tmp_path):
    """Ingested into the cloud store, a device's own recommendations (open ports, baseline,
    unutilized messages) are stored and listed as `alerts --data` gives them."""
    hub, _, _ = advised_hub
    in_memory = [r for r in recommendations(hub)
                 if r["rule"] in ("open-ports", "os-baseline-failed", "unutilized-messages")]
    store = str(tmp_path / "cloud.db")
    for args in (["--data", hub.data_dir, "--store", store], ["--store", store, "--json"]):
        done = subprocess.run([MICROAGENT, "alerts"] + args, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    stored = [json.loads(line) for line in done.stdout.splitlines()]
    stored = [r for r in stored if r["kind"] == "recommendation"]
    assert in_memory and sorted((r["device"], r["rule"], r["title"]) for r in stored) == sorted(
        (r["device"], r["rule"], r["title"]) for r in in_memory)

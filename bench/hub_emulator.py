"""Throughput of the hub emulator: QoS 1 messages/s it acknowledges, each stored durably first.

Baseline, measured in the same run with the same client: Debian's mosquitto broker (in memory,
no authentication, nothing stored). Run: `.venv/bin/python -m bench.hub_emulator [N]`.

A second table: one device's throughput while another device sends 30 KB reported-twin patches
as fast as the hub takes them, against the same device alone on the same hub (issue 24: a twin
grown without limit, its patches worked in the event loop, took another device from 2,070 to
2.8 messages/s).
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt
import paho.mqtt.client as mqtt

from hub_emulator.process import HubProcess

MESSAGE = json.dumps({"Events": [{"Name": "ConnectionCreate", "Payload": [{"remote_port": 443}] * 20}]}).encode()
TOPIC = "devices/bench/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8"


TWIN_PATCH = json.dumps({"p%d" % j: chr(ord("a") + j) * 3000 for j in range(10)}).encode()
TWIN_TOPIC = "$iothub/twin/PATCH/properties/reported/?$rid=%d"
HAMMER_WINDOW = 20   # patches in flight: as many as paho's default window lets through


def publish_all(port, count, username=None, password=None, ca=None, client_id="bench"):
    """Seconds for COUNT QoS 1 publishes to be acknowledged (paho's default window of 20 in flight)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if username:
        client.username_pw_set(username, password)
    if ca:
        client.tls_set(ca_certs=ca)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        started = time.perf_counter()
        topic = TOPIC.replace("devices/bench/", "devices/%s/" % client_id)
        infos = [client.publish(topic, MESSAGE, qos=1) for _ in range(count)]
        for info in infos:
            info.wait_for_publish(60)
        return time.perf_counter() - started
    finally:
        client.disconnect()
        client.loop_stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_seconds(workdir, count):
    port = free_port()
    config = os.path.join(workdir, "mosquitto.conf")
    with open(config, "w") as out:
        out.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n" % port)
    broker = subprocess.Popen(["mosquitto", "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        return publish_all(port, count)
    finally:
        broker.terminate()
        broker.wait(10)


class TwinHammer:
    """A device sending the same 30 KB reported patch at QoS 1, HAMMER_WINDOW in flight, until
    stopped; `patches` counts those the hub acknowledged."""

    def __init__(self, hub, identity):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=identity, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(hub.username(identity), hub.token(identity))
        self.client.connect("127.0.0.1", hub.plain_port)
        self.client.loop_start()
        self.patches = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._hammer, daemon=True)

    def _hammer(self):
        rid = 0
        while not self._stop.is_set():
            infos = []
            for _ in range(HAMMER_WINDOW):
                rid += 1
                infos.append(self.client.publish(TWIN_TOPIC % rid, TWIN_PATCH, qos=1))
            for info in infos:
                info.wait_for_publish(60)
                self.patches += 1

    def __enter__(self):
        self._thread.start()
        while self.patches == 0:   # under way before the other device starts
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(120)
        self.client.disconnect()
        self.client.loop_stop()


def noisy_neighbour_rows(workdir, count):
    """(target, seconds, twin patches acknowledged meanwhile) for COUNT messages of one device,
    alone and while another hammers its twin, on one hub."""
    with HubProcess(os.path.join(workdir, "neighbours")) as hub:
        for identity in ("quiet", "hammer"):
            hub.add_device(identity)
        credentials = dict(username=hub.username("quiet"), password=hub.token("quiet"), client_id="quiet")
        alone = publish_all(hub.plain_port, count, **credentials)
        with TwinHammer(hub, "hammer") as hammer:
            before = hammer.patches
            hammered = publish_all(hub.plain_port, count, **credentials)
            patches = hammer.patches - before
        stored = len(hub.messages("quiet"))
    assert stored == 2 * count, "the hub stored %d of %d messages" % (stored, 2 * count)
    return [("one device alone (baseline)", alone, None),
            ("one device, another sending 30 KB twin patches", hammered, patches)]


def run(count=2000):
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        baseline = mosquitto_seconds(workdir, count)
        rows.append(("mosquitto 2.0, plain TCP, in memory (baseline)", baseline))
        with HubProcess(os.path.join(workdir, "hub")) as hub:
            hub.add_device("bench")
            credentials = dict(username=hub.username("bench"), password=hub.token("bench"))
            rows.append(("hub emulator, plain TCP, stored in SQLite", publish_all(hub.plain_port, count, **credentials)))
            rows.append(("hub emulator, TLS, stored in SQLite",
                         publish_all(hub.port, count, ca=hub.ca, **credentials)))
            stored = len(hub.messages("bench"))
        assert stored == 2 * count, "the hub stored %d of %d messages" % (stored, 2 * count)
    print("QoS 1 publishes of %d bytes, %d per target, paho-mqtt %s; ratio = msgs/s over the baseline's"
          % (len(MESSAGE), count, paho.mqtt.__version__))
    width = max(len(name) for name, _ in rows)
    print("%-*s  %8s  %10s  %8s" % (width, "target", "seconds", "msgs/s", "ratio"))
    for name, seconds in rows:
        print("%-*s  %8.2f  %10.0f  %7.2fx" % (width, name, seconds, count / seconds, baseline / seconds))
    with tempfile.TemporaryDirectory() as workdir:
        neighbours = noisy_neighbour_rows(workdir, count)
    print()
    print("A device's QoS 1 publishes (%d, plain TCP) while another sends reported patches of %d bytes;"
          " ratio = msgs/s over the baseline's" % (count, len(TWIN_PATCH)))
    width = max(len(name) for name, _, _ in neighbours)
    print("%-*s  %8s  %10s  %8s  %14s" % (width, "target", "seconds", "msgs/s", "ratio", "twin patches/s"))
    baseline = neighbours[0][1]
    for name, seconds, patches in neighbours:
        print("%-*s  %8.2f  %10.0f  %7.2fx  %14s" % (width, name, seconds, count / seconds, baseline / seconds,
                                                     "-" if patches is None else "%.0f" % (patches / seconds)))


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)

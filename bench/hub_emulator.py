"""Throughput of the hub emulator: QoS 1 messages/s it acknowledges, each stored durably first.

Baseline, measured in the same run with the same client: Debian's mosquitto broker (in memory,
no authentication, nothing stored). Run: `.venv/bin/python -m bench.hub_emulator [N]`.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import paho.mqtt
import paho.mqtt.client as mqtt

from hub_emulator.process import HubProcess

MESSAGE = json.dumps({"Events": [{"Name": "ConnectionCreate", "Payload": [{"remote_port": 443}] * 20}]}).encode()
TOPIC = "devices/bench/messages/events/%24.ct=application%2Fjson&%24.ce=utf-8"


def publish_all(port, count, username=None, password=None, ca=None):
    """Seconds for COUNT QoS 1 publishes to be acknowledged (paho's default window of 20 in flight)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench", protocol=mqtt.MQTTv311)
    if username:
        client.username_pw_set(username, password)
    if ca:
        client.tls_set(ca_certs=ca)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        started = time.perf_counter()
        infos = [client.publish(TOPIC, MESSAGE, qos=1) for _ in range(count)]
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


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)

"""Twin limits as IoT Hub's (docs: "Understand and use device twins in IoT Hub"), through the
running emulator over raw MQTT: the whole reported section at most 32 KB as IoT Hub counts it,
whatever the number of patches; keys 1 KB, strings 4 KB, depth 10; and one device hammering its
twin does not stop another device's telemetry."""
import json
import os
import subprocess
import sys
import threading

import pytest

from raw_mqtt import RawClient, publish, subscribe

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
SECTION_LIMIT = 32 * 1024
RESPONSES = "$iothub/twin/res/#"


def iothub_size(value):
    """A section's size as the IoT Hub docs count it (written apart from twin.section_size)."""
    if isinstance(value, dict):
        return sum(len(k.encode()) + iothub_size(v) for k, v in value.items() if not k.startswith("$"))
    if isinstance(value, str):
        return len(value.encode())
    return 4 if isinstance(value, bool) else 8


def thirty_kb_patch(n):
    """A reported patch of about 30 KB of new keys (ten strings of 3,000 bytes: IoT Hub's 4 KB
    value limit rules out one big string)."""
    return {"p%d_%d" % (n, j): chr(ord("a") + j) * 3000 for j in range(10)}


def read_publish(client):
    """(topic, payload) of the next PUBLISH from the hub (QoS 0), skipping other packets."""
    while True:
        first, body = client.read_packet()
        if first >> 4 == 3:
            size = int.from_bytes(body[:2], "big")
            return body[2:2 + size].decode(), body[2 + size:]


class TwinClient:
    """A device on the plain port that patches its reported properties and reads the statuses."""

    def __init__(self, hub, identity="dev1"):
        self.client = RawClient(hub, timeout=30).login(hub, identity)
        self.client.send(subscribe(1, RESPONSES))
        assert self.client.read_packet()[0] == 0x90   # SUBACK
        self.rid = 0

    def send_patch(self, patch):
        self.rid += 1
        topic = "$iothub/twin/PATCH/properties/reported/?$rid=%d" % self.rid
        self.client.send(publish(topic, json.dumps(patch).encode()))

    def status(self):
        """The status of the next twin response (204 applied, 400 malformed, 413 too large)."""
        topic, _ = read_publish(self.client)
        return int(topic[len("$iothub/twin/res/"):].split("/")[0])

    def patch(self, patch):
        self.send_patch(patch)
        return self.status()


def test_reported_section_stays_within_32_kb_whatever_the_number_of_patches(hub):
    """Finding 5: 400 patches of 30 KB each made a 12 MB twin (only each patch was checked)."""
    device = TwinClient(hub)
    statuses = [device.patch(thirty_kb_patch(n)) for n in range(400)]
    assert statuses[0] == 204
    assert set(statuses[1:]) == {413}   # each later one would take the section past 32 KB
    reported = hub.twin("dev1")["reported"]
    assert reported["$version"] == 2    # only the first was stored
    assert set(reported) - {"$version"} == set(thirty_kb_patch(0))
    assert iothub_size(reported) <= SECTION_LIMIT
    # Deleting keys (null) makes room again: the limit is on what the section holds, not on history.
    assert device.patch({key: None for key in thirty_kb_patch(0)}) == 204
    assert device.patch(thirty_kb_patch(1)) == 204
    assert set(hub.twin("dev1")["reported"]) - {"$version"} == set(thirty_kb_patch(1))


def test_a_patch_filling_the_section_exactly_is_taken(hub):
    device = TwinClient(hub)
    # eight strings of 4,000 bytes under keys of 2 bytes (32,016), and one filling the rest: more
    # than 32 KB of JSON text for exactly 32 KB as IoT Hub counts it
    exact = {"k%d" % i: "x" * 4000 for i in range(8)}
    room = SECTION_LIMIT - iothub_size(exact)
    exact["rest"] = "y" * (room - len("rest"))
    assert iothub_size(exact) == SECTION_LIMIT
    assert device.patch(exact) == 204
    assert device.patch({"one": 1}) == 413            # a number counts 8 bytes, plus its key
    assert device.patch({"rest": "y"}) == 204          # smaller: taken
    assert hub.twin("dev1")["reported"]["rest"] == "y"


@pytest.mark.parametrize("patch", [
    {"k" * 1025: 1},                                   # a key over 1 KB
    {"s": "x" * 4097},                                 # a string value over 4 KB
    {"s": "\u00e9" * 2049},                            # 4,098 bytes of UTF-8 in 2,049 characters
    json.loads('{"a":' * 11 + '1' + '}' * 11),         # nested 11 levels
    [1, 2],                                            # not an object
])
def test_patches_over_iothub_limits_are_refused_with_400_and_not_stored(hub, patch):
    device = TwinClient(hub)
    assert device.patch(patch) == 400
    assert hub.twin("dev1")["reported"] == {"$version": 1}
    assert device.patch({"ok": True}) == 204           # the connection goes on


def test_set_desired_past_the_section_limit_is_one_line_and_stores_nothing(hub):
    pairs = ["k%d=%s" % (i, "x" * 4000) for i in range(8)]
    first = subprocess.run([MICROAGENT, "hub", "set-desired", "--data", str(hub.data_dir), "dev1"] + pairs,
                           capture_output=True, text=True, timeout=30)
    assert first.returncode == 0, first.stderr
    more = ["m%d=%s" % (i, "x" * 4000) for i in range(2)]
    second = subprocess.run([MICROAGENT, "hub", "set-desired", "--data", str(hub.data_dir), "dev1"] + more,
                            capture_output=True, text=True, timeout=30)
    assert second.returncode == 2
    assert len(second.stderr.strip().splitlines()) == 1 and "desired section would be" in second.stderr
    assert "Traceback" not in second.stderr
    desired = hub.twin("dev1")["desired"]
    assert desired["$version"] == 2 and "m0" not in desired


def telemetry(n):
    return publish("devices/quiet/messages/events/", b'{"n": %d}' % n, qos=1, packet_id=n % 65535 + 1)


def test_a_device_hammering_its_twin_does_not_stop_another_devices_telemetry(hub):
    """One device sends 30 KB twin patches back to back (many queued at once) while another
    sends QoS 1 telemetry one message at a time: each of the quiet device's messages is
    acknowledged and stored while the hammer still runs."""
    hub.add_device("quiet")
    hammer = TwinClient(hub)
    stop = threading.Event()
    answered = []

    def hammer_patches():
        while not stop.is_set():
            hammer.send_patch(thirty_kb_patch(0))   # the same keys each time: each one is taken

    def read_answers():
        try:
            while True:
                answered.append(hammer.status())
        except (ConnectionError, OSError):
            pass

    threads = [threading.Thread(target=hammer_patches, daemon=True),
               threading.Thread(target=read_answers, daemon=True)]
    for thread in threads:
        thread.start()
    quiet = RawClient(hub, timeout=30).login(hub, "quiet")
    try:
        while len(answered) < 5:                         # the hammer is at work before we start
            assert threads[0].is_alive()
            threading.Event().wait(0.01)
        answered_before = len(answered)
        count = 100
        for n in range(count):
            quiet.send(telemetry(n))
            first, body = quiet.read_packet()
            assert (first, body) == (0x40, (n % 65535 + 1).to_bytes(2, "big"))   # its PUBACK
        answered_during = len(answered) - answered_before
    finally:
        stop.set()
        quiet.close()
    threads[0].join(30)
    hammer.client.close()
    threads[1].join(30)
    assert answered_during > 0                           # the two really overlapped
    assert set(answered) == {204}
    assert len(hub.messages("quiet")) == count
    assert iothub_size(hub.twin("dev1")["reported"]) <= SECTION_LIMIT


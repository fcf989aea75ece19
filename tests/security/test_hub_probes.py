"""Probes of the hub emulator from outside, as one misbehaving device would send them: each
is refused the way IoT Hub refuses it (CONNACK, status 400, disconnect), the hub logs no
traceback, and no one device's data can break what the hub shows for all of them."""
import json
import os
import stat
import subprocess
import sys

import pytest

import raw_mqtt
from raw_mqtt import RawClient

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
EVENTS = "devices/dev1/messages/events/"


def publish_qos1(client, topic, payload, packet_id=1):
    client.send(raw_mqtt.publish(topic, payload, qos=1, packet_id=packet_id))
    assert client.read_packet() == (0x40, packet_id.to_bytes(2, "big"))


def strict_json(line):
    def refuse(name):
        raise ValueError("%s in output" % name)
    return json.loads(line, parse_constant=refuse)


def hub_messages(hub, *extra):
    return subprocess.run([MICROAGENT, "hub", "messages", "--data", hub.data_dir] + list(extra),
                          capture_output=True, text=True, timeout=60)


def test_one_devices_bodies_cannot_break_hub_messages(hub):
    client = RawClient(hub).login(hub)
    bodies = [b"[" * 100000 + b"]" * 100000, b'{"a": NaN, "b": -Infinity}', b'{"a": "\\ud800"}',
              b'{"Events": [{"Name": "X", "Payload": 5}]}', b'{"ok": 1}']
    for number, body in enumerate(bodies, 1):
        publish_qos1(client, EVENTS, body, number)
    client.close()
    table = hub_messages(hub)
    assert table.returncode == 0, table.stderr
    assert "Traceback" not in table.stderr
    assert table.stdout.splitlines()[-1] == "5 messages"
    listed = hub_messages(hub, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [strict_json(line) for line in listed.stdout.splitlines()]
    assert [row["id"] for row in rows] == [1, 2, 3, 4, 5]
    # Not JSON within bounds: the body shows as its text, byte for byte.
    assert [row["body"] for row in rows[:3]] == [b.decode() for b in bodies[:3]]
    assert rows[4]["body"] == {"ok": 1}


def test_deeply_nested_twin_patch_gets_400_and_the_connection_stays(hub):
    client = RawClient(hub).login(hub)
    client.send(raw_mqtt.subscribe(1, "$iothub/twin/res/#"))
    assert client.read_packet()[0] == 0x90
    patch = b'{"a":' * 5000 + b"1" + b"}" * 5000  # 25 KB: under the 32 KB twin limit
    client.send(raw_mqtt.publish("$iothub/twin/PATCH/properties/reported/?$rid=7", patch))
    first, body = client.read_packet()
    assert first >> 4 == 3 and b"$iothub/twin/res/400/?$rid=7" in body
    client.send(raw_mqtt.PINGREQ)
    assert client.read_packet() == (0xD0, b"")
    client.close()
    assert "Traceback" not in hub.log() and "internal error" not in hub.log()
    assert hub.twin("dev1")["reported"] == {"$version": 1}


@pytest.mark.parametrize("expiry", ["9" * 10000, "\u00b2", "\u0661\u0662", "", "-5", "1e9"],
                         ids=["10000-digits", "superscript", "arabic-indic", "empty", "minus",
                              "exponent"])
def test_malformed_sas_expiry_gets_connack_4_and_no_traceback(hub, expiry):
    good = hub.token("dev1")
    token = good[:good.rindex("&se=")] + "&se=" + expiry
    client = RawClient(hub)
    client.send(raw_mqtt.connect("dev1", hub.username("dev1"), token))
    assert client.recv_exact(4) == b"\x20\x02\x00\x04"
    client.close()
    assert "Traceback" not in hub.log()


def test_messages_over_256_kb_are_refused_like_iot_hub(hub):
    client = RawClient(hub).login(hub)
    publish_qos1(client, EVENTS, b"7" * (256 * 1024))
    client.send(raw_mqtt.publish(EVENTS, b"8" * (256 * 1024 + 1), qos=1, packet_id=2))
    assert client.closed_by_server()
    client.close()
    assert [len(m["payload"]) for m in hub.messages()] == [256 * 1024]
    assert "over IoT Hub's limit of 262144" in hub.log()


@pytest.mark.parametrize("topic", ["$iothub/twin/PATCH/properties/reported/anything?$rid=1",
                                   "$iothub/twin/GET/more/?$rid=1",
                                   "$iothub/twin/GETX?$rid=1"])
def test_twin_topics_match_exactly(hub, topic):
    client = RawClient(hub).login(hub)
    client.send(raw_mqtt.publish(topic, b"{}"))
    assert client.closed_by_server()
    client.close()
    assert hub.twin("dev1")["reported"] == {"$version": 1}


def test_database_and_wal_holding_the_keys_are_0600(hub):
    client = RawClient(hub).login(hub)
    publish_qos1(client, EVENTS, b"{}")
    client.close()
    path = os.path.join(hub.data_dir, "hub.db")
    for name in (path, path + "-wal", path + "-shm"):
        assert os.path.exists(name), name
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name
    for name in os.listdir(hub.data_dir):
        if name.endswith(".key"):
            assert stat.S_IMODE(os.stat(os.path.join(hub.data_dir, name)).st_mode) == 0o600


def test_an_existing_world_readable_database_is_made_0600(tmp_path):
    from hub_emulator.database import open_db
    open_db(str(tmp_path)).close()
    os.chmod(tmp_path / "hub.db", 0o644)
    open_db(str(tmp_path)).close()
    assert stat.S_IMODE(os.stat(tmp_path / "hub.db").st_mode) == 0o600


@pytest.mark.parametrize("value, reason", [
    ("[" * 5000 + "]" * 5000, "a: value nested deeper than a twin allows (10 levels)"),
    ("[" * 11 + "]" * 11, "desired patch refused: patch: nested deeper than 10 levels"),
    ("NaN", "desired patch refused: patch: NaN is not JSON")])
def test_set_desired_refuses_what_a_twin_cannot_hold(hub, value, reason):
    proc = subprocess.run([MICROAGENT, "hub", "set-desired", "--data", hub.data_dir, "dev1",
                           "a=" + value], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["microagent: error: " + reason]
    assert hub.twin("dev1")["desired"] == {"$version": 1}

# IoT Hub session (microagent.hub) against a fake socket: user name, SAS password, telemetry topic
# with the security property bag and $.mid, the twin exchange, and resending after a lost
# connection with the same message id. Runs on CPython and MicroPython.
import json

from microagent import hub, mqtt, sas
from microagent.config import Config
from microagent.outbox import Outbox
from mp_test_mqtt_wire import FakeSocket

run = mqtt.run

KEY_B64 = "c2VjcmV0LWRldmljZS1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk="
CS = "HostName=myhub.azure-devices.net;DeviceId=dev-01;SharedAccessKey=" + KEY_B64
NOW = 1800000000
SUBACK_1 = b"\x90\x03\x00\x01\x00"
SUBACK_2 = b"\x90\x03\x00\x02\x00"


def packets(data):
    """Splits MQTT bytes into (first_byte, body) pairs."""
    out = []
    i = 0
    while i < len(data):
        first = data[i]
        i += 1
        length = 0
        shift = 0
        while True:
            digit = data[i]
            i += 1
            length |= (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                break
        out.append((first, bytes(data[i:i + length])))
        i += length
    return out


def publish_parts(first, body):
    topic_len = (body[0] << 8) | body[1]
    topic = body[2:2 + topic_len].decode()
    rest = body[2 + topic_len:]
    if (first >> 1) & 3:
        return topic, (rest[0] << 8) | rest[1], rest[2:]
    return topic, 0, rest


def incoming_publish(topic, payload):
    t = topic.encode()
    body = bytes((len(t) >> 8, len(t) & 0xFF)) + t + payload
    return b"\x30" + bytes((len(body) & 0x7F | 0x80, len(body) >> 7)) + body


class Opener:
    """Hands out fake sockets, each preloaded with what the broker answers to a connect."""

    def __init__(self):
        self.sockets = []
        self.calls = []

    async def __call__(self, host, port, ca_der, server_hostname=None):
        self.calls.append((host, port, ca_der, server_hostname))
        sock = FakeSocket(b"\x20\x02\x00\x00" + SUBACK_1 + SUBACK_2)
        self.sockets.append(sock)
        return sock


def _session(text=CS, **kwargs):
    opener = Opener()
    logs = []
    session = hub.HubSession(sas.ConnectionString(text), Outbox(8, 4096), Config(), ca_der=b"CA",
                             log=logs.append, clock_s=lambda: NOW, opener=opener, **kwargs)
    return session, opener, logs


def test_username_and_topics():
    cs = sas.ConnectionString(CS)
    assert hub.username(cs) == "myhub.azure-devices.net/dev-01/?api-version=2021-04-12"
    assert hub.telemetry_topic(cs, "ab12-7") == (
        "devices/dev-01/messages/events/%24.ifid=urn%3Aazureiot%3ASecurity%3ASecurityAgent%3A1"
        "&%24.ct=application%2Fjson&%24.ce=utf-8&%24.mid=ab12-7")
    module = sas.ConnectionString(CS + ";ModuleId=DefenderIotMicroAgent")
    assert hub.username(module) == "myhub.azure-devices.net/dev-01/DefenderIotMicroAgent/?api-version=2021-04-12"
    assert hub.telemetry_topic(module, "m").startswith("devices/dev-01/modules/DefenderIotMicroAgent/messages/events/%24.ifid=")


def test_connect_sends_sas_subscribes_and_gets_twin():
    session, opener, logs = _session(CS + ";GatewayHostName=127.0.0.1", port=18883)
    assert run(session.step(now_ms=0))
    assert opener.calls == [("127.0.0.1", 18883, b"CA", "127.0.0.1")]
    sent = packets(opener.sockets[0].sent)
    first, body = sent[0]
    assert first == 0x10
    expected_token = sas.sas_token("myhub.azure-devices.net/devices/dev-01", sas.b64decode(KEY_B64), NOW + 3600)
    user = b"myhub.azure-devices.net/dev-01/?api-version=2021-04-12"
    assert body.endswith(b"\x00\x06dev-01" + bytes((0, len(user))) + user
                         + bytes((0, len(expected_token))) + expected_token.encode())
    assert sent[1][0] == 0x82 and b"$iothub/twin/res/#" in sent[1][1]
    assert sent[2][0] == 0x82 and b"$iothub/twin/PATCH/properties/desired/#" in sent[2][1]
    assert publish_parts(*sent[3]) == ("$iothub/twin/GET/?$rid=1", 0, b"")
    assert any("connected to 127.0.0.1:18883" in line for line in logs)
    for line in logs:
        assert expected_token not in line and KEY_B64[:16] not in line


def test_twin_desired_applied_rejected_and_reported():
    session, opener, logs = _session()
    changes = []
    session.twin.on_config = changes.append
    run(session.step(now_ms=0))
    sock = opener.sockets[0]
    sock.sent = bytearray()
    twin = {"desired": {"Process_CacheSize": 64, "Login_Disabled": "yes", "$version": 3},
            "reported": {}}
    sock.feed(incoming_publish("$iothub/twin/res/200/?$rid=1", json.dumps(twin).encode()))
    run(session.step(now_ms=1))
    assert session.twin.received and changes == [{"Process_CacheSize": 64}]
    assert session.config["Process_CacheSize"] == 64 and session.config["Login_Disabled"] is False
    topic, pid, payload = publish_parts(*packets(sock.sent)[0])
    assert topic == "$iothub/twin/PATCH/properties/reported/?$rid=2"
    report = json.loads(payload)
    assert report["config"]["Process_CacheSize"] == 64
    assert report["config_rejected"] == {"Login_Disabled": "expected true or false"}
    assert any("Login_Disabled rejected" in line for line in logs)
    # The hub answers the PATCH; then a desired patch fixes the bad key.
    sock.sent = bytearray()
    sock.feed(incoming_publish("$iothub/twin/res/204/?$rid=2&$version=5", b""))
    run(session.step(now_ms=2))
    assert session.twin.last_report_status == 204
    sock.feed(incoming_publish("$iothub/twin/PATCH/properties/desired/?$version=4",
                               b'{"Login_Disabled": true, "$version": 4}'))
    run(session.step(now_ms=3))
    topic, pid, payload = publish_parts(*packets(sock.sent)[0])
    report = json.loads(payload)
    assert report["config"]["Login_Disabled"] is True
    assert report["config_rejected"] == {"Login_Disabled": None}


def test_malformed_twin_documents_are_ignored():
    session, opener, logs = _session()
    run(session.step(now_ms=0))
    sock = opener.sockets[0]
    sock.feed(incoming_publish("$iothub/twin/PATCH/properties/desired/?$version=2", b"{not json"))
    sock.feed(incoming_publish("$iothub/twin/PATCH/properties/desired/?$version=3", b"[1,2]"))
    sock.feed(incoming_publish("$iothub/twin/res/abc/?$rid=x", b"{}"))
    for i in range(3):
        assert run(session.step(now_ms=1 + i))
    assert session.config.as_dict() == Config().as_dict()
    assert sum(1 for line in logs if "desired properties ignored" in line) == 2


def test_telemetry_resent_with_same_message_id_after_reconnect():
    session, opener, logs = _session()
    run(session.step(now_ms=0))
    session.send(b'{"Events": []}')
    run(session.step(now_ms=1))
    sock = opener.sockets[0]
    sent = [p for p in packets(sock.sent) if p[0] & 0xF0 == 0x30 and p[0] & 0x06]
    topic, pid, payload = publish_parts(*sent[0])
    assert payload == b'{"Events": []}' and pid > 0
    mid = session.message_id(1)
    assert topic == hub.telemetry_topic(session.cs, mid) and topic.endswith("&%24.mid=" + mid)
    # The connection drops before the PUBACK: the message goes again, with the same $.mid.
    sock.eof = True
    assert not run(session.step(now_ms=2))
    assert session.policy.failures == 1 and len(session.outbox) == 1
    assert not run(session.step(now_ms=3))  # backoff: not yet
    assert len(opener.sockets) == 1
    assert run(session.step(now_ms=2 + 1000))
    sock2 = opener.sockets[1]
    resent = [p for p in packets(sock2.sent) if p[0] & 0xF0 == 0x30 and p[0] & 0x06]
    topic2, pid2, payload2 = publish_parts(*resent[0])
    assert topic2 == topic and payload2 == payload
    sock2.feed(b"\x40\x02" + bytes((pid2 >> 8, pid2 & 0xFF)))
    run(session.step(now_ms=2000))
    assert len(session.outbox) == 0 and session.outbox.delivered == 1


def test_token_renewed_before_expiry_reconnects():
    now = [NOW]
    opener = Opener()
    session = hub.HubSession(sas.ConnectionString(CS), Outbox(2, 256), Config(), log=lambda line: None,
                             clock_s=lambda: now[0], opener=opener, sas_ttl_s=600, sas_renew_s=60)
    run(session.step(now_ms=0))
    now[0] = NOW + 539
    run(session.step(now_ms=1))
    assert len(opener.sockets) == 1
    now[0] = NOW + 540
    run(session.step(now_ms=2))
    assert len(opener.sockets) == 2 and opener.sockets[0].closed
    token = sas.sas_token("myhub.azure-devices.net/devices/dev-01", sas.b64decode(KEY_B64), NOW + 540 + 600)
    assert token.encode() in bytes(opener.sockets[1].sent)


def test_twin_larger_than_buffer_is_logged_not_fatal():
    session, opener, logs = _session(buf_size=512)
    run(session.step(now_ms=0))
    big = json.dumps({"desired": {"Baseline_ChecksDisabled": "x" * 600}, "reported": {}}).encode()
    opener.sockets[0].feed(incoming_publish("$iothub/twin/res/200/?$rid=1", big))
    assert run(session.step(now_ms=1))
    assert not session.twin.received and session.connected()
    assert any("larger than the 512-byte MQTT buffer" in line for line in logs)


def test_send_when_room_waits_for_acknowledgement_instead_of_dropping():
    opener = Opener()
    session = hub.HubSession(sas.ConnectionString(CS), Outbox(1, 256), Config(), log=lambda line: None,
                             clock_s=lambda: NOW, opener=opener)
    assert run(session.send_when_room(b"first", 100)) == 1
    run(session.step())
    assert run(session.send_when_room(b"second", 50)) == -1  # first not acknowledged yet
    assert session.outbox.dropped == 0 and len(session.outbox) == 1
    opener.sockets[0].feed(b"\x40\x02\x00\x03")  # PUBACK: pids 1, 2 went to the SUBSCRIBEs
    assert run(session.send_when_room(b"second", 1000)) == 2
    assert session.outbox.dropped == 0 and session.outbox.delivered == 1
    assert run(session.send_when_room(b"x" * 300, 1000)) == -1  # larger than the outbox: never fits


def test_a_rejection_stays_reported_until_its_desired_value_changes():
    session, opener, logs = _session()
    run(session.step(now_ms=0))
    sock = opener.sockets[0]
    sock.sent = bytearray()
    sock.feed(incoming_publish("$iothub/twin/PATCH/properties/desired/?$version=2",
                               b'{"Process_CacheSize": -1, "$version": 2}'))
    run(session.step(now_ms=1))
    report = json.loads(publish_parts(*packets(sock.sent)[0])[2])
    reason = report["config_rejected"]["Process_CacheSize"]
    assert reason
    # An unrelated valid key: desired still holds -1, so the rejection is reported again.
    sock.sent = bytearray()
    sock.feed(incoming_publish("$iothub/twin/PATCH/properties/desired/?$version=3",
                               b'{"Login_Disabled": true, "$version": 3}'))
    run(session.step(now_ms=2))
    report = json.loads(publish_parts(*packets(sock.sent)[0])[2])
    assert report["config_rejected"] == {"Process_CacheSize": reason}
    # Changing the bad value clears it.
    sock.sent = bytearray()
    sock.feed(incoming_publish("$iothub/twin/PATCH/properties/desired/?$version=4",
                               b'{"Process_CacheSize": 32, "$version": 4}'))
    run(session.step(now_ms=3))
    report = json.loads(publish_parts(*packets(sock.sent)[0])[2])
    assert report["config_rejected"] == {"Process_CacheSize": None}

# The firmware MQTT client (microagent.mqtt) against a fake socket: exact bytes on the wire, and
# the receive parser's handling of good, split, oversized and malformed packets.
# Runs on CPython and MicroPython.
from microagent import mqtt
from mp_assert import raises

run = mqtt.run

USER = "hub.example/dev-01/?api-version=2021-04-12"
CONNACK_OK = b"\x20\x02\x00\x00"


class FakeSocket:
    """A MicroPython-style stream: readinto returns None when nothing is queued (or 0 at EOF)."""

    def __init__(self, incoming=b"", eof=False, chunk=4096):
        self.sent = bytearray()
        self.writes = 0
        self.incoming = bytearray(incoming)
        self.eof = eof
        self.chunk = chunk
        self.closed = False
        self.blocking = None

    def feed(self, data):
        self.incoming += data

    def write(self, buf):
        self.sent += bytes(buf)
        self.writes += 1
        return len(buf)

    def readinto(self, buf):
        if not self.incoming:
            return 0 if self.eof else None
        n = min(len(buf), len(self.incoming), self.chunk)
        buf[:n] = self.incoming[:n]
        self.incoming = self.incoming[n:]
        return n

    def setblocking(self, flag):
        self.blocking = flag

    def close(self):
        self.closed = True


class FakeClock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


def _string(text):
    data = text.encode()
    return bytes((len(data) >> 8, len(data) & 0xFF)) + data


def _connected(user=USER, **kwargs):
    sock = FakeSocket(CONNACK_OK)
    client = mqtt.MQTTClient("dev-01", user=user, **kwargs)
    run(client.connect(sock, password="tok"))
    sock.sent = bytearray()
    return client, sock




def test_connect_bytes():
    sock = FakeSocket(b"\x20\x02\x01\x00")
    client = mqtt.MQTTClient("dev-01", user=USER, keepalive_s=60)
    assert run(client.connect(sock, password="tok")) is True  # session present flag
    body = b"\x00\x04MQTT\x04\xc2\x00\x3c" + _string("dev-01") + _string(USER) + _string("tok")
    assert bytes(sock.sent) == bytes((0x10, len(body))) + body
    assert sock.blocking is False and client.connected()


def test_connect_without_credentials_and_persistent_session():
    sock = FakeSocket(CONNACK_OK)
    client = mqtt.MQTTClient("c", keepalive_s=1177)
    assert run(client.connect(sock, clean_session=False)) is False
    assert bytes(sock.sent) == b"\x10\x0d\x00\x04MQTT\x04\x00\x04\x99\x00\x01c"


def test_refused_connect_names_reason_not_password():
    sock = FakeSocket(b"\x20\x02\x00\x05")
    client = mqtt.MQTTClient("dev-01", user=USER)
    exc = raises(mqtt.MQTTRefused, client.connect, sock, "secret-token-value")
    assert exc.code == 5 and "not authorized" in str(exc)
    assert "secret-token-value" not in str(exc)
    assert sock.closed and not client.connected()


def test_connect_times_out_without_connack():
    client = mqtt.MQTTClient("dev-01", timeout_ms=30)
    exc = raises(mqtt.MQTTError, client.connect, FakeSocket())
    assert "CONNACK" in str(exc)


def test_publish_qos0_bytes():
    client, sock = _connected()
    assert run(client.publish("a/b", b"hello")) == 0
    assert bytes(sock.sent) == b"\x30\x0a\x00\x03a/bhello"


def test_publish_qos1_tracks_puback():
    client, sock = _connected()
    pid = run(client.publish("devices/dev-01/messages/events/", b"{}", qos=1))
    assert pid == 1
    assert bytes(sock.sent) == b"\x32" + bytes((2 + 31 + 2 + 2,)) + _string("devices/dev-01/messages/events/") + b"\x00\x01{}"
    assert client.pending(1) and client.inflight_count() == 1
    sock.feed(b"\x40\x02\x00\x01")
    assert run(client.poll()) == mqtt.PUBACK
    assert not client.pending(1) and client.inflight_count() == 0


def test_publish_dup_retain_flags():
    client, sock = _connected()
    run(client.publish("t", b"", qos=1, retain=True, dup=True))
    assert bytes(sock.sent) == b"\x3b\x05\x00\x01t\x00\x01"


def test_remaining_length_encoding_boundaries():
    client, sock = _connected(user=None, buf_size=64)
    # topic "t" (3 bytes) + payload: remaining lengths 127, 128, 16383, 16384
    for remaining, header in ((127, b"\x30\x7f"), (128, b"\x30\x80\x01"),
                              (16383, b"\x30\xff\x7f"), (16384, b"\x30\x80\x80\x01")):
        sock.sent = bytearray()
        payload = b"x" * (remaining - 3)
        run(client.publish("t", payload))
        assert bytes(sock.sent[:len(header)]) == header, (remaining, bytes(sock.sent[:4]))
        assert len(sock.sent) == len(header) + remaining
        assert bytes(sock.sent[len(header):len(header) + 3]) == b"\x00\x01t"


def test_payload_larger_than_buffer_is_sent_whole():
    client, sock = _connected(user=None, buf_size=32)
    payload = bytes(range(256)) * 4
    run(client.publish("big", payload))
    assert bytes(sock.sent) == b"\x30\x85\x08\x00\x03big" + payload


def test_subscribe_bytes_and_suback():
    client, sock = _connected()
    sock.feed(b"\x90\x03\x00\x01\x01")
    assert run(client.subscribe("$iothub/twin/res/#", qos=1)) == 1
    assert bytes(sock.sent) == b"\x82" + bytes((2 + 2 + 18 + 1,)) + b"\x00\x01" + _string("$iothub/twin/res/#") + b"\x01"


def test_subscribe_refused():
    client, sock = _connected()
    sock.feed(b"\x90\x03\x00\x01\x80")
    exc = raises(mqtt.MQTTError, client.subscribe, "x/#", 0)
    assert "refused" in str(exc)


def test_incoming_publish_qos1_delivered_and_acked():
    client, sock = _connected()
    got = []
    client.on_message = lambda topic, payload: got.append((topic, bytes(payload)))
    sock.feed(b"\x32\x0c\x00\x03a/b\x12\x34hello")
    assert run(client.poll()) == mqtt.PUBLISH
    assert got == [(b"a/b", b"hello")]
    assert bytes(sock.sent) == b"\x40\x02\x12\x34"


def test_packets_split_across_reads():
    client, sock = _connected()
    got = []
    client.on_message = lambda topic, payload: got.append((topic, bytes(payload)))
    sock.chunk = 1
    sock.feed(b"\x30\x07\x00\x01tpayl" + b"\x40\x02\x00\x09")
    assert run(client.poll()) == mqtt.PUBLISH
    assert run(client.poll()) == mqtt.PUBACK
    assert got == [(b"t", b"payl")] and client.unknown_acks == 1


def test_oversized_incoming_publish_dropped_counted_acked():
    client, sock = _connected(user=None, buf_size=32)
    got = []
    client.on_message = lambda topic, payload: got.append(bytes(payload))
    body = b"\x00\x01t\x00\x07" + b"z" * 60
    sock.feed(b"\x32" + bytes((len(body),)) + body + b"\x30\x04\x00\x01tk")
    assert run(client.poll()) == mqtt.PUBLISH
    assert client.oversized == 1 and got == []
    assert bytes(sock.sent) == b"\x40\x02\x00\x07"
    assert run(client.poll()) == mqtt.PUBLISH and got == [b"k"]


def test_keepalive_pingreq_and_lost_connection():
    clock = FakeClock()
    sock = FakeSocket(CONNACK_OK)
    client = mqtt.MQTTClient("c", keepalive_s=10, clock=clock)
    run(client.connect(sock))
    sock.sent = bytearray()
    clock.now = 4999
    assert run(client.poll()) == 0 and bytes(sock.sent) == b""
    clock.now = 5000
    run(client.poll())
    assert bytes(sock.sent) == b"\xc0\x00"
    sock.feed(b"\xd0\x00")
    assert run(client.poll()) == mqtt.PINGRESP
    clock.now = 10000
    run(client.poll())
    assert bytes(sock.sent) == b"\xc0\x00\xc0\x00"
    clock.now = 20000
    exc = raises(mqtt.MQTTError, client.poll)
    assert "PINGRESP" in str(exc) and sock.closed


def test_malformed_packets_close_the_connection():
    bad = (
        (b"\x30\xff\xff\xff\xff\x7f", "remaining length"),
        (b"\x36\x05\x00\x01t\x00\x01", "QoS 3"),
        (b"\x41\x02\x00\x01", "reserved flags"),
        (b"\x40\x03\x00\x01\x00", "length 3"),
        (b"\x10\x00", "unexpected packet type 0x10"),
        (b"\x30\x01\x00", "shorter than its header"),
        (b"\x30\x03\x00\x05t", "topic longer than the packet"),
        (b"\x90\x02\x00\x01", "SUBACK"),
        (b"\xd0\x01\x00", "PINGRESP"),
    )
    for data, reason in bad:
        client, sock = _connected()
        sock.feed(data)
        exc = raises(mqtt.MQTTError, client.poll)
        assert reason in str(exc), (data, str(exc))
        assert sock.closed and not client.connected()


def test_eof_and_truncated_packet():
    client, sock = _connected()
    sock.eof = True
    assert "closed" in str(raises(mqtt.MQTTError, client.poll))
    client, sock = _connected(timeout_ms=30)
    sock.feed(b"\x30\x10\x00\x01")
    assert "incomplete" in str(raises(mqtt.MQTTError, client.poll))


def test_inflight_limit_and_packet_ids():
    client, sock = _connected(max_inflight=2)
    assert run(client.publish("t", b"", qos=1)) == 1
    assert run(client.publish("t", b"", qos=1)) == 2
    raises(mqtt.MQTTError, client.publish, "t", b"", 1)
    sock.feed(b"\x40\x02\x00\x01")
    run(client.poll())
    assert run(client.publish("t", b"", qos=1)) == 3
    raises(ValueError, client.publish, "t", b"", 2)


def test_packet_id_wraps_and_skips_ids_in_use():
    client, sock = _connected(max_inflight=2)
    client._next_pid = 65534
    assert run(client.publish("t", b"", qos=1)) == 65535
    client._next_pid = 65534
    assert run(client.publish("t", b"", qos=1)) == 1  # skips 65535 (in flight) and 0


def test_disconnect_bytes():
    client, sock = _connected()
    client.disconnect()
    assert bytes(sock.sent) == b"\xe0\x00" and sock.closed
    raises(mqtt.MQTTError, client.publish, "t", b"")


def test_pem_to_der():
    der = bytes(range(60))
    import binascii
    body = binascii.b2a_base64(der)
    pem = b"-----BEGIN CERTIFICATE-----\n" + body[:40] + b"\n" + body[40:] + b"-----END CERTIFICATE-----\n"
    assert mqtt.pem_to_der(pem) == der
    assert mqtt.pem_to_der(pem.decode()) == der
    raises(ValueError, mqtt.pem_to_der, b"nothing here")

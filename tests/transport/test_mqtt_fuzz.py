"""Hypothesis fuzz of the firmware MQTT client's receive parser (on CPython): whatever bytes the
network delivers, in whatever chunks, the client either handles packets or raises MQTTError and
closes the connection; it never crashes with another exception and never hangs."""
import os
import signal
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "firmware"))

from microagent import mqtt  # noqa: E402
from mp_test_mqtt_wire import FakeSocket  # noqa: E402

KNOWN = {mqtt.PUBLISH, mqtt.PUBACK, mqtt.SUBACK, mqtt.PINGRESP, mqtt.CONNACK}
FUZZ = settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def watchdog():
    """Fails the test (instead of hanging the suite) if the parser ever loops forever."""
    def expired(signum, frame):
        raise TimeoutError("MQTT parser fuzz did not finish in 240 s: a hang")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(240)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _client(buf_size, chunk):
    sock = FakeSocket(b"\x20\x02\x00\x00", chunk=chunk)
    client = mqtt.MQTTClient("fuzz", buf_size=buf_size, timeout_ms=20, keepalive_s=0)
    mqtt.run(client.connect(sock))
    delivered = []
    client.on_message = lambda topic, payload: delivered.append((topic, bytes(payload)))
    return client, sock, delivered


def _drain(client, sock, data):
    """Feeds DATA then EOF; polls until the client gives up. Returns the packet types handled."""
    sock.feed(data)
    sock.eof = True
    handled = []
    for _ in range(len(data) + 2):  # every handled packet consumes at least 2 bytes
        try:
            kind = mqtt.run(client.poll())
        except mqtt.MQTTError:
            assert not client.connected() and sock.closed
            return handled, True
        assert kind in KNOWN, kind
        handled.append(kind)
    raise AssertionError("poll() kept returning without consuming the input")


@FUZZ
@given(data=st.binary(max_size=3000), buf_size=st.integers(32, 512), chunk=st.integers(1, 64))
def test_random_bytes(data, buf_size, chunk):
    client, sock, _ = _client(buf_size, chunk)
    handled, failed = _drain(client, sock, data)
    assert failed  # the stream always ends in EOF, which must surface as MQTTError


def _publish(topic, payload, qos, pid):
    body = len(topic).to_bytes(2, "big") + topic + (pid.to_bytes(2, "big") if qos else b"") + payload
    return bytes((0x30 | qos << 1,)) + _remaining(len(body)) + body


def _remaining(n):
    out = bytearray()
    while True:
        digit, n = n & 0x7F, n >> 7
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


packet = st.one_of(
    st.builds(lambda t, p, q, i: ("pub", t, p, q, i, _publish(t, p, q, i)),
              st.binary(min_size=1, max_size=40), st.binary(max_size=600), st.integers(0, 1),
              st.integers(1, 65535)),
    st.builds(lambda i: ("ack", i, b"\x40\x02" + i.to_bytes(2, "big")), st.integers(1, 65535)),
    st.just(("ping", b"\xd0\x00")),
    st.builds(lambda i, c: ("suback", b"\x90\x03" + i.to_bytes(2, "big") + bytes((c,))),
              st.integers(1, 65535), st.sampled_from([0, 1, 0x80])),
)


@FUZZ
@given(packets=st.lists(packet, max_size=12), buf_size=st.integers(64, 700), chunk=st.integers(1, 300))
def test_valid_streams_parse_exactly(packets, buf_size, chunk):
    client, sock, delivered = _client(buf_size, chunk)
    handled, _ = _drain(client, sock, b"".join(p[-1] for p in packets))
    assert len(handled) == len(packets)
    expected = []
    oversized = 0
    for p in packets:
        if p[0] == "pub":
            _, topic, payload, qos, pid, raw = p
            if 2 + len(topic) + (2 if qos else 0) + len(payload) <= buf_size:
                expected.append((topic, payload))
            else:
                oversized += 1
    assert delivered == expected and client.oversized == oversized


@FUZZ
@given(packets=st.lists(packet, min_size=1, max_size=8), data=st.data())
def test_mutated_streams_never_crash(packets, data):
    stream = bytearray(b"".join(p[-1] for p in packets))
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(stream)))
        action = data.draw(st.sampled_from(["flip", "insert", "cut"]))
        if action == "flip" and where < len(stream):
            stream[where] ^= data.draw(st.integers(1, 255))
        elif action == "insert":
            stream[where:where] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del stream[where:where + data.draw(st.integers(1, 8))]
    client, sock, _ = _client(data.draw(st.integers(32, 256)), data.draw(st.integers(1, 50)))
    _drain(client, sock, bytes(stream))

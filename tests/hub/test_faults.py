"""Faults: bad packets close one connection and never the hub; keep-alive; a killed hub keeps its data."""
import socket
import ssl
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import raw_mqtt
from hub_emulator.process import HubProcess
from paho_device import PahoDevice
from raw_mqtt import RawClient


@pytest.fixture
def bystander(hub):
    """dev2, connected over TLS before the trouble starts; it must stay connected through it."""
    hub.add_device("dev2")
    device = PahoDevice(hub, "dev2")
    assert not device.connect().is_failure
    yield device
    device.close()


def assert_unharmed(hub, bystander, n):
    assert not bystander.disconnected.is_set()
    assert bystander.publish("devices/dev2/messages/events/n=%d" % n, b"still here")
    assert hub.messages("dev2")[-1]["properties"] == {"n": str(n)}


@pytest.mark.parametrize("garbage", [
    b"\xff\xff\xff\xff\xff\xff",                                   # reserved type, 5-byte length
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",                          # not MQTT at all
    raw_mqtt.packet(0x10, raw_mqtt.string("MQTT") + b"\x04"),      # CONNECT cut short
    raw_mqtt.publish("devices/dev1/messages/events/", b"before CONNECT"),
], ids=["bad-header", "http", "short-connect", "publish-first"])
def test_malformed_packet_before_connect_closes_only_that_connection(hub, bystander, garbage):
    client = RawClient(hub)
    client.send(garbage)
    assert client.closed_by_server()
    client.close()
    assert_unharmed(hub, bystander, 1)


@pytest.mark.parametrize("garbage", [
    raw_mqtt.packet(0x30, b"\x00\x40abc"),                          # topic length past the end
    raw_mqtt.packet(0x30, raw_mqtt.string(b"\xc3\x28")),            # topic not UTF-8
    raw_mqtt.connect("dev1"),                                        # a second CONNECT
    b"\x30\x80\x80\x80\x80\x01",                                     # remaining length of 5 bytes
], ids=["short-topic", "bad-utf8", "second-connect", "long-length"])
def test_malformed_packet_after_connect_closes_only_that_connection(hub, bystander, garbage):
    client = RawClient(hub).login(hub)
    client.send(garbage)
    assert client.closed_by_server()
    client.close()
    assert hub.messages("dev1") == []
    assert_unharmed(hub, bystander, 2)


def test_oversized_publish_closes_the_connection(tmp_path):
    with HubProcess(tmp_path / "hub", extra_args=["--max-packet", "4096"]) as hub:
        hub.add_device("dev1")
        device = PahoDevice(hub)
        device.connect()
        assert device.publish("devices/dev1/messages/events/", b"x" * 3000)
        assert not device.publish("devices/dev1/messages/events/", b"x" * 5000)
        assert device.disconnected.wait(5)
        device.close()
        assert [len(m["payload"]) for m in hub.messages()] == [3000]
        assert "exceeds the 4096 byte limit" in hub.log()


def test_announced_huge_packet_is_refused_without_waiting_for_it(hub):
    client = RawClient(hub).login(hub)
    client.send(b"\x30\xff\xff\xff\x7f")  # 256 MB announced, nothing sent
    assert client.closed_by_server()
    client.close()


def test_default_limit_takes_a_256_kb_message(hub):
    device = PahoDevice(hub)
    device.connect()
    assert device.publish("devices/dev1/messages/events/%24.ct=application%2Fjson", b"7" * 256 * 1024)
    device.close()
    assert len(hub.messages()[0]["payload"]) == 256 * 1024


def test_plain_bytes_on_the_tls_port_close_only_that_connection(hub, bystander):
    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as sock:
        sock.sendall(raw_mqtt.connect("dev1"))
        try:  # a TLS alert, then EOF; a hang would raise socket.timeout
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
    with pytest.raises(ssl.SSLCertVerificationError):  # a client that does not trust our CA fails, the hub lives
        with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as sock:
            ssl.create_default_context().wrap_socket(sock, server_hostname="127.0.0.1")
    assert_unharmed(hub, bystander, 3)


def test_unsupported_protocol_level_gets_connack_1(hub):
    client = RawClient(hub)
    client.send(raw_mqtt.connect("dev1", hub.username("dev1"), hub.token("dev1"), level=5))
    assert client.recv_exact(4) == b"\x20\x02\x00\x01"
    assert client.closed_by_server()
    client.close()


def test_keepalive_is_enforced_at_one_and_a_half_times(hub):
    client = RawClient(hub, timeout=10).login(hub, keepalive=2)
    for _ in range(4):  # pinging every second keeps it open well past 3 s
        time.sleep(1)
        client.send(raw_mqtt.PINGREQ)
        assert client.recv_exact(2) == b"\xd0\x00"
    started = time.monotonic()
    assert client.closed_by_server()
    silent = time.monotonic() - started
    client.close()
    assert 2.5 < silent < 8, silent
    assert "keep-alive" in hub.log()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(header=st.sampled_from([b"", b"\x10", b"\x30", b"\x32", b"\x34", b"\x82", b"\xa2"]),
       garbage=st.binary(min_size=1, max_size=200), logged_in=st.booleans())
def test_fuzz_the_running_server(hub, header, garbage, logged_in):
    client = RawClient(hub, timeout=1)
    if logged_in:
        client.login(hub)
    try:
        client.send(header + garbage)
        client.closed_by_server()  # closed, or still waiting for more bytes: both fine
    except (ConnectionError, socket.timeout):
        pass
    client.close()
    # the hub still serves a well-behaved client, at once
    check = RawClient(hub, timeout=5).login(hub)
    check.send(raw_mqtt.PINGREQ)
    assert check.recv_exact(2) == b"\xd0\x00"
    check.close()


def test_messages_survive_a_kill_and_restart(tmp_path):
    hub = HubProcess(tmp_path / "hub")
    hub.add_device("dev1")
    with hub:
        with open(hub.ca, "rb") as f:
            ca_before = f.read()
        device = PahoDevice(hub)
        device.connect()
        for i in range(200):
            assert device.publish("devices/dev1/messages/events/seq=%d" % i, b'{"seq": %d}' % i)
        ports = (hub.port, hub.plain_port)
        hub.kill()  # SIGKILL right after the last PUBACK: no chance to flush anything more
        assert device.disconnected.wait(5)
        device.close()
        hub.start()
        assert (hub.port, hub.plain_port) == ports  # back at the same address
        assert [m["properties"]["seq"] for m in hub.messages()] == [str(i) for i in range(200)]
        with open(hub.ca, "rb") as f:
            assert f.read() == ca_before  # clients keep trusting the same CA
        again = PahoDevice(hub)
        assert not again.connect().is_failure
        assert again.publish("devices/dev1/messages/events/seq=200", b'{"seq": 200}')
        again.close()
        assert len(hub.messages()) == 201


def test_empty_client_id_is_identifier_rejected(hub):
    client = RawClient(hub)
    client.send(raw_mqtt.connect("", hub.username("dev1"), hub.token("dev1")))
    assert client.recv_exact(4) == b"\x20\x02\x00\x02"
    assert client.closed_by_server()
    client.close()

"""The emulator's MQTT codec: parsing client packets, encoding replies, and a bounded fuzz test."""
import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import raw_mqtt
from hub_emulator import codec
from hub_emulator.codec import ProtocolError


def decode_all(data, max_size=codec.DEFAULT_MAX_PACKET):
    """Every packet in DATA, parsed, as the server reads them (from an asyncio stream)."""
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        packets = []
        while True:
            raw = await codec.read_packet(reader, max_size)
            if raw is None:
                return packets
            packets.append(codec.parse(*raw))
    return asyncio.run(asyncio.wait_for(run(), 5))


def test_connect_fields():
    [connect] = decode_all(raw_mqtt.connect("dev1", "hub/dev1/?api-version=1", "SharedAccessSignature x", 30))
    assert connect == codec.Connect(4, "dev1", "hub/dev1/?api-version=1", b"SharedAccessSignature x", 30, True)


def test_publish_subscribe_ping_disconnect():
    data = (raw_mqtt.publish("a/b", b"\x00payload", qos=1, packet_id=7) + raw_mqtt.publish("c", b"", qos=0)
            + raw_mqtt.subscribe(9, "x/#", "y") + raw_mqtt.PINGREQ + b"\xe0\x00")
    assert decode_all(data) == [codec.Publish("a/b", b"\x00payload", 1, False, False, 7),
                                codec.Publish("c", b"", 0, False, False, None),
                                codec.Subscribe(9, [("x/#", 1), ("y", 1)]), codec.Pingreq(), codec.Disconnect()]


@pytest.mark.parametrize("size", [0, 127, 128, 16383, 16384, 2097151, 2097152])
def test_remaining_length_boundaries(size):
    [message] = decode_all(raw_mqtt.publish("t", b"x" * (size - 3) if size >= 3 else b"", 0), max_size=size + 8)
    assert len(message.payload) == max(size - 3, 0)
    assert codec.publish("t", b"x" * size)[1:].startswith(raw_mqtt.remaining_length(size + 3))


@pytest.mark.parametrize("data,error", [
    (b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes"),
    (raw_mqtt.publish("t", b"x" * 100), "exceeds the 64 byte limit"),
    (raw_mqtt.packet(0x30, b"\x00\x05ab"), "ends inside a field"),
    (raw_mqtt.packet(0x30, raw_mqtt.string(b"\xff\xfe")), "not valid UTF-8"),
    (raw_mqtt.packet(0x30, raw_mqtt.string("a\x00b")), r"U\+0000"),
    (raw_mqtt.publish("a/#", b""), "wildcard"),
    (raw_mqtt.packet(0x36, raw_mqtt.string("t") + b"\x00\x01"), "QoS 3"),
    (raw_mqtt.publish("t", b"", qos=1, packet_id=0), "packet id 0"),
    (raw_mqtt.packet(0x80, b"\x00\x01" + raw_mqtt.string("t") + b"\x01"), "unexpected packet type 8"),
    (raw_mqtt.packet(0x82, b"\x00\x01" + raw_mqtt.string("t") + b"\x03"), "requested QoS byte 3"),
    (raw_mqtt.packet(0x82, b"\x00\x01"), "without a topic filter"),
    (raw_mqtt.connect("d", protocol=b"HTTP"), "unknown protocol"),
    (raw_mqtt.packet(0x10, raw_mqtt.string("MQTT") + b"\x04\x82\x00\x3c" + raw_mqtt.string("d")),
     "password flag|ends inside"),
    (b"\x20\x02\x00\x00", "unexpected packet type 2"),
    (raw_mqtt.packet(0x10, raw_mqtt.connect("d")[2:] + b"\x00"), "bytes after the CONNECT payload"),
])
def test_malformed_packets_are_protocol_errors(data, error):
    with pytest.raises(ProtocolError, match=error):
        decode_all(data, max_size=64)


def test_other_protocol_levels_are_unsupported_not_malformed():
    with pytest.raises(codec.UnsupportedProtocol):
        decode_all(raw_mqtt.connect("d", level=5))
    with pytest.raises(codec.UnsupportedProtocol):
        decode_all(raw_mqtt.connect("d", protocol=b"MQIsdp", level=3))


def test_oversized_packet_is_refused_before_its_body_arrives():
    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(b"\x30\xff\xff\xff\x7f")  # announces 256 MB, sends nothing more (no EOF either)
        with pytest.raises(ProtocolError, match="exceeds"):
            await asyncio.wait_for(codec.read_packet(reader, 1024), 2)
    asyncio.run(run())


def test_server_packets():
    assert codec.connack(codec.NOT_AUTHORIZED) == b"\x20\x02\x00\x05"
    assert codec.puback(0x1234) == b"\x40\x02\x12\x34"
    assert codec.suback(5, [1, 0x80]) == b"\x90\x04\x00\x05\x01\x80"
    assert codec.unsuback(5) == b"\xb0\x02\x00\x05"
    assert codec.pingresp() == b"\xd0\x00"
    assert codec.publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.text(alphabet=st.characters(blacklist_characters="\x00+#", blacklist_categories=["Cs"]),
                     min_size=1, max_size=60),
       payload=st.binary(max_size=300), qos=st.sampled_from([0, 1]), packet_id=st.integers(1, 65535))
def test_publish_round_trip(topic, payload, qos, packet_id):
    [message] = decode_all(raw_mqtt.publish(topic, payload, qos, packet_id))
    assert (message.topic, message.payload, message.qos) == (topic, payload, qos)
    assert message.packet_id == (packet_id if qos else None)


FUZZ = settings(max_examples=400, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def only_protocol_errors(data, max_size=4096):
    """Decoding DATA either yields packets or fails with a ProtocolError or a short read, within 5 s."""
    try:
        return decode_all(data, max_size)
    except (ProtocolError, asyncio.IncompleteReadError):
        return None


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data):
    only_protocol_errors(data)


@FUZZ
@given(ptype=st.integers(0, 15), flags=st.integers(0, 15), body=st.binary(max_size=300))
def test_fuzz_well_framed_packets_of_every_type(ptype, flags, body):
    try:
        codec.parse(ptype, flags, body)
    except ProtocolError:
        pass


@FUZZ
@given(st.data())
def test_fuzz_mutated_valid_packets(data):
    valid = data.draw(st.sampled_from([
        raw_mqtt.connect("dev1", "hub/dev1/?api-version=1", "SharedAccessSignature sr=a&sig=b&se=1"),
        raw_mqtt.publish("devices/dev1/messages/events/a=b", b"{}", qos=1),
        raw_mqtt.subscribe(3, "$iothub/twin/res/#"), raw_mqtt.PINGREQ]))
    position = data.draw(st.integers(0, len(valid) - 1))
    replacement = data.draw(st.binary(min_size=0, max_size=4))
    only_protocol_errors(valid[:position] + replacement + valid[position + 1:])

"""Reading a Kafka record as Event Hubs presents a message IoT Hub routed to it: the bytes here
are written by hand from the AMQP 1.0 type encodings (str8 0xA1, str32 0xB1, sym8 0xA3,
timestamp 0x83, null 0x40) and the header names of docs/event-hubs.md, not by the emulator."""
import struct

import pytest

from host_sim.cloud.kafka_records import Malformed, header_value, read_record

ENQUEUED_MS = 1796688001123     # 2026-12-08T00:00:01.123Z


def test_amqp_encoded_and_plain_header_values_are_read():
    assert header_value(b"\xa1\x04dev1", "h") == "dev1"
    assert header_value(b"\xb1\x00\x00\x00\x04dev1", "h") == "dev1"
    assert header_value(b"\xa3\x09Telemetry", "h") == "Telemetry"
    assert header_value(b"\x83" + struct.pack(">q", ENQUEUED_MS), "h") == ENQUEUED_MS
    assert header_value(b"\x40", "h") is None
    assert header_value(b"application/json", "h") == "application/json"
    assert header_value("é".encode(), "h") == "é"


@pytest.mark.parametrize("raw", [b"\xa1\x09dev1", b"\xb1\x00\x00\x01\x00x", b"\x83\x00\x01",
                                 b"\xa1\x02\xff\xfe", b"plain \xff text",
                                 b"\x83" + struct.pack(">q", -5)])
def test_a_header_value_that_does_not_decode_is_refused(raw):
    with pytest.raises(Malformed):
        header_value(raw, "h")


def routed(headers, key=b"ignored-key", value=b'{"Events": []}'):
    return read_record(key, value, headers, (1, 42), 7)


def test_a_record_as_event_hubs_delivers_a_routed_message():
    stored = routed([("content-type", b"application/json"), ("content-encoding", b"utf-8"),
                     ("message-id", b"0-17"),
                     ("iothub-connection-device-id", b"\xa1\x04gw-1"),
                     ("iothub-connection-module-id", b"\xa1\x05agent"),
                     ("iothub-connection-auth-method", b"\xa1\x02{}"),
                     ("iothub-enqueuedtime", b"\x83" + struct.pack(">q", ENQUEUED_MS)),
                     ("iothub-message-source", b"\xa1\x09Telemetry"),
                     ("x-opt-enqueued-time", b"\x83" + struct.pack(">q", 1)),
                     ("site", b"\xa1\x05north"), ("flag", b"\x40")])
    assert stored.id == 7
    assert stored.device == "gw-1/agent"
    assert stored.arrival == ENQUEUED_MS / 1000.0
    assert stored.properties == {"$.ct": "application/json", "$.ce": "utf-8", "$.mid": "0-17",
                                 "site": "north", "flag": None}
    assert stored.body == b'{"Events": []}'


def test_the_device_comes_from_the_key_when_routing_set_no_header():
    stored = routed([("content-type", b"application/json")], key=b"dev-7")
    assert stored.device == "dev-7"
    assert stored.arrival == 0.042      # the record's own timestamp


@pytest.mark.parametrize("headers,key,reason", [
    ([], None, "no device id"),
    ([], b"", "no device id"),
    ([("iothub-connection-device-id", b"\xa1\x07dev/../")], None, "not an IoT Hub id"),
    ([], b"dev 1", "not an IoT Hub id"),
    ([], b"\xff\xfe", "key is not UTF-8"),
    ([("iothub-connection-device-id", b"\xa1\x04dev1"), ("big", b"x" * 100000)], None, "100000 bytes"),
    ([("h%d" % i, b"\xa1\x01x") for i in range(65)], b"dev1", "65 headers"),
    ([("iothub-connection-device-id", b"\xa1\x04dev1"), ("site", b"\x83" + b"\x00" * 8)], None,
     "not text"),
])
def test_records_that_are_not_device_messages_are_malformed(headers, key, reason):
    with pytest.raises(Malformed, match=reason):
        read_record(key, b"{}", headers, (0, -1), 3)


def test_a_body_over_the_bound_is_malformed_before_anything_is_decoded():
    with pytest.raises(Malformed, match="body of"):
        read_record(b"dev1", b"x" * (1024 * 1024 + 1), [("garbage", b"\xa1\xff")], (0, -1), 3)

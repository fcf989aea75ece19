# The MQTT 3.1.1 packet codec (microagent.mqtt_codec) against the standard: every expected packet
# below is written out by hand, byte by byte, from the OASIS MQTT 3.1.1 specification (29 October
# 2014); the comment before each names the section it follows. Nothing here is produced by our own
# encoder or by another MQTT library. Runs on CPython, MicroPython and micropython32.
from microagent import mqtt_codec as codec
from microagent.mqtt_codec import MQTTError
from mp_assert import raises, only_on_micropython

HEADROOM = 5  # where the codec starts a body: room for the longest fixed header (2.2.3)


def _packet(buf, end, last=b""):
    # The bytes on the wire: the packet in BUF, and after it LAST when it did not fit there.
    start = codec.finish(buf, end)
    if end <= len(buf):
        return bytes(buf[start:end])
    return bytes(buf[start:end - len(last)]) + last


def _fails(fn, args, reason):
    exc = raises(MQTTError, fn, *args)
    assert reason in str(exc), (reason, str(exc))


# ---- CONNECT (3.1) -----------------------------------------------------------------------------

def test_connect_with_user_name_password_and_clean_session():
    buf = bytearray(64)
    end = codec.connect(buf, "dev-01", 60, True, "u", b"pw")
    # 3.1.1 fixed header 0x10; 3.1.2.1 protocol name 00 04 'MQTT'; 3.1.2.2 level 4; 3.1.2.3 flags
    # user name (bit 7) + password (bit 6) + clean session (bit 1) = 0xC2; 3.1.2.10 keep alive 60
    # = 00 3C; 3.1.3 payload: client id, user name, password, each with a 2-byte length (1.5.3).
    # Remaining length 10 + 8 + 3 + 4 = 25 = 0x19.
    assert _packet(buf, end) == (
        b"\x10\x19" b"\x00\x04MQTT" b"\x04" b"\xc2" b"\x00\x3c"
        b"\x00\x06dev-01" b"\x00\x01u" b"\x00\x02pw")


def test_connect_without_credentials_persistent_session():
    buf = bytearray(32)
    end = codec.connect(buf, "c", 1177, False, None, None)
    # 3.1.2.3: no flags set (clean session 0); 3.1.2.10: 1177 = 0x0499; remaining 10 + 3 = 13.
    assert _packet(buf, end) == b"\x10\x0d\x00\x04MQTT\x04\x00\x04\x99\x00\x01c"


def test_connect_password_larger_than_the_buffer_follows_the_packet():
    buf = bytearray(24)
    password = b"S" * 40
    end = codec.connect(buf, "d", 0, True, None, password)
    assert end > len(buf)  # the password does not fit: the caller sends it after the rest
    # 3.1.2.3: password (bit 6) + clean session (bit 1) = 0x42; remaining 10 + 3 + 2 + 40 = 55.
    assert _packet(buf, end, password) == (
        b"\x10\x37\x00\x04MQTT\x04\x42\x00\x00\x00\x01d\x00\x28" + b"S" * 40)


def test_connect_that_does_not_fit_the_buffer():
    _fails(codec.connect, (bytearray(16), "a-long-client-id", 60, True, None, None),
           "does not fit the 16-byte buffer")
    _fails(codec.connect, (bytearray(64), "c", 65536, True, None, None), "keep alive 65536")


# ---- PUBLISH (3.3), PUBACK (3.4) ---------------------------------------------------------------

def test_publish_qos0():
    buf = bytearray(32)
    end = codec.publish(buf, "a/b", 0, 0, False, False, b"hello")
    # 3.3.1: 0x30 (QoS 0, no DUP, no RETAIN); 3.3.2.1 topic name 00 03 'a/b'; no packet id at QoS 0.
    assert _packet(buf, end) == b"\x30\x0a\x00\x03a/bhello"


def test_publish_qos1_dup_retain():
    buf = bytearray(32)
    end = codec.publish(buf, b"t", 1, 10, True, True, b"ab")
    # 3.3.1.1 DUP 0x08, 3.3.1.2 QoS 1 0x02, 3.3.1.3 RETAIN 0x01: 0x3B; 3.3.2.2 packet id 00 0A.
    assert _packet(buf, end) == b"\x3b\x07\x00\x01t\x00\x0aab"
    _fails(codec.publish, (bytearray(32), "t", 2, 1, False, False, b""), "QoS 2 not supported")


def test_publish_payload_larger_than_the_buffer_follows_the_packet():
    buf = bytearray(16)
    payload = bytes(range(256)) * 4
    end = codec.publish(buf, "big", 0, 0, False, False, payload)
    assert end > len(buf)
    # 2.2.3: remaining length 5 + 1024 = 1029 = 0x405 -> 0x85 0x08.
    assert _packet(buf, end, payload) == b"\x30\x85\x08\x00\x03big" + payload


def test_publish_topic_that_does_not_fit_the_buffer():
    _fails(codec.publish, (bytearray(16), "devices/dev/messages/events/", 0, 0, False, False, b""),
           "does not fit the 16-byte")


def test_puback():
    ack = bytearray(4)
    codec.puback(ack, b"\x00\x01t\x12\x34", 5)  # for a PUBLISH to "t" with packet id 0x1234
    assert bytes(ack) == b"\x40\x02\x12\x34"  # 3.4.1 0x40 and length 2; 3.4.2 packet identifier


# ---- SUBSCRIBE (3.8), PINGREQ (3.12), DISCONNECT (3.14) ---------------------------------------

def test_subscribe_one_topic_filter():
    buf = bytearray(32)
    end = codec.subscribe(buf, 1, "a/#", 1)
    # 3.8.1 fixed header 0x82 (flags 0010); 3.8.2 packet id 00 01; 3.8.3 filter 00 03 'a/#' and
    # the requested QoS byte 01. Remaining length 2 + 5 + 1 = 8.
    assert _packet(buf, end) == b"\x82\x08\x00\x01\x00\x03a/#\x01"
    _fails(codec.subscribe, (bytearray(32), 2, "x", 3), "QoS 3")
    _fails(codec.subscribe, (bytearray(10), 2, "xyz", 0), "does not fit the 10-byte")


def test_pingreq_and_disconnect():
    assert codec.PINGREQ_PACKET == b"\xc0\x00"  # 3.12.1
    assert codec.DISCONNECT_PACKET == b"\xe0\x00"  # 3.14.1


# ---- the remaining length (2.2.3) --------------------------------------------------------------

# 2.2.3, Table 2.4: the smallest and largest values of each size, and their bytes.
_LENGTHS = ((0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
            (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"),
            (2097152, b"\x80\x80\x80\x01"), (268435455, b"\xff\xff\xff\x7f"))


def test_remaining_length_encoding_table():
    buf = bytearray(HEADROOM)
    for value, digits in _LENGTHS:
        buf[HEADROOM - 1] = 0x30  # the first byte, where the encoders leave it
        start = codec.finish(buf, HEADROOM + value)  # a body of VALUE bytes, none of them in BUF
        assert bytes(buf[start:HEADROOM]) == b"\x30" + digits, (value, bytes(buf[start:]))


def test_remaining_length_decoding_table():
    for value, digits in _LENGTHS:
        data = b"\x30" + digits + b"\xee"  # what follows the length is not part of it
        assert codec.remaining_length(data, 1, len(data)) == value, digits


def test_remaining_length_too_large_to_send():
    _fails(codec.finish, (bytearray(HEADROOM), HEADROOM + 268435456), "268435455")


def test_remaining_length_incomplete_and_malformed():
    assert codec.remaining_length(b"\x30\x80", 1, 2) == -1  # more bytes to come
    assert codec.remaining_length(b"\x30\xff\xff\xff", 1, 4) == -1
    # 2.2.3: at most four bytes; a fourth with its continuation bit set is malformed.
    _fails(codec.remaining_length, (b"\x30\xff\xff\xff\xff\x7f", 1, 6), "more than 4 bytes")
    _fails(codec.remaining_length, (b"\x30\x80\x80\x80\x80", 1, 5), "more than 4 bytes")


# ---- what a client receives: CONNACK (3.2), PUBLISH, PUBACK, SUBACK (3.9), PINGRESP (3.13) -----

def test_connack():
    # 3.2.1 fixed header 20 02; 3.2.2.2 session present (bit 0); 3.2.2.3 return code.
    assert codec.check_header(0x20, 2, 64) == 2
    assert codec.check_body(0x20, b"\x01\x00", 2) == 1
    assert codec.check_body(0x20, b"\x00\x05", 2) == 0
    _fails(codec.check_body, (0x20, b"\x02\x00", 2), "bits 7-1 are reserved")  # 3.2.2.1
    _fails(codec.check_header, (0x20, 3, 64), "length 3, expected 2")
    _fails(codec.check_header, (0x21, 2, 64), "reserved flags set in packet type 0x21")  # 2.2.2


def test_puback_received():
    assert codec.check_header(0x40, 2, 64) == 2  # 3.4.1
    assert codec.check_body(0x40, b"\x12\x34", 2) == 0x1234  # 2.3.1, big-endian (1.5.2)
    _fails(codec.check_header, (0x40, 1, 64), "length 1, expected 2")  # truncated
    _fails(codec.check_header, (0x42, 2, 64), "reserved flags")


def test_suback():
    body = b"\x00\x07\x01"  # 3.9.2 packet id 7; 3.9.3 return code: QoS 1 granted
    assert codec.check_header(0x90, 3, 64) == 3
    assert codec.check_body(0x90, body, 3) == 7  # the packet id; the return code is body[2]
    assert codec.check_body(0x90, b"\x00\x07\x80", 3) == 7  # 0x80: failure
    _fails(codec.check_body, (0x90, b"\x00\x07\x03", 3), "return code 0x03")  # 3.9.3: reserved
    _fails(codec.check_body, (0x90, b"\x00\x07\x01\x7f", 4), "return code 0x7f")
    _fails(codec.check_header, (0x90, 2, 64), "SUBACK with length 2")  # no return code
    _fails(codec.check_header, (0x90, 65, 64), "SUBACK with length 65")  # larger than the buffer


def test_pingresp():
    assert codec.check_header(0xD0, 0, 64) == 0  # 3.13.1: D0 00
    _fails(codec.check_header, (0xD0, 1, 64), "PINGRESP with length 1")


def test_incoming_publish_qos1():
    # 3.3.1 0x32 (QoS 1), remaining 12; 3.3.2.1 topic 00 03 'a/b'; 3.3.2.2 packet id 12 34.
    data = b"\x32\x0c\x00\x03a/b\x12\x34hello"
    length = codec.remaining_length(data, 1, len(data))
    assert length == 12 and codec.check_header(data[0], length, 64) == 2
    body = bytearray(64)
    body[:length] = data[2:]
    header = codec.publish_header(data[0], length, body)
    assert header == 7 and bytes(body[header - 2:header]) == b"\x12\x34"
    assert bytes(body[2:header - 2]) == b"a/b" and bytes(body[header:length]) == b"hello"


def test_incoming_publish_qos0():
    data = b"\x30\x07\x00\x01tpayl"  # no packet identifier at QoS 0 (3.3.2.2)
    body = bytearray(data[2:])
    assert codec.check_header(0x30, 7, 64) == 2
    header = codec.publish_header(0x30, 7, body)
    assert header == 3 and bytes(body[header:7]) == b"payl"


def test_incoming_publish_malformed():
    _fails(codec.check_header, (0x36, 5, 64), "QoS 3")  # 3.3.1.2: both QoS bits set
    _fails(codec.check_header, (0x34, 5, 64), "QoS 2")  # never subscribed with QoS 2
    _fails(codec.check_header, (0x30, 1, 64), "shorter than its header")
    _fails(codec.check_header, (0x32, 3, 64), "shorter than its header")  # no room for the id
    _fails(codec.publish_header, (0x30, 3, bytearray(b"\x00\x05t")), "topic longer than the packet")
    _fails(codec.publish_header, (0x30, 100, bytearray(b"\x00\x20tt")), "longer than the 4-byte buffer")


def test_packet_types_a_client_never_receives():
    _fails(codec.check_header, (0x10, 0, 64), "unexpected packet type 0x10")  # CONNECT
    _fails(codec.check_header, (0xB0, 2, 64), "unexpected packet type 0xb0")  # UNSUBACK
    _fails(codec.check_header, (0xC0, 0, 64), "unexpected packet type 0xc0")  # PINGREQ
    _fails(codec.check_header, (0x82, 8, 64), "reserved flags")  # SUBSCRIBE


def test_hot_path_allocates_nothing():
    """A QoS 1 PUBLISH written and its PUBACK read, over and over: the heap does not move."""
    only_on_micropython("the MQTT hot path's heap allocation")
    from gc import collect, mem_alloc
    buf = bytearray(64)
    ack = bytearray(4)
    topic = b"devices/dev-01/messages/events/"
    payload = b"{}"
    incoming = b"\x40\x02\x00\x01"
    body = b"\x00\x01"
    publish_head = bytearray(b"\x00\x01t\x00\x07")
    collect()
    before = mem_alloc()
    for pid in range(1, 200):
        codec.finish(buf, codec.publish(buf, topic, 1, pid, False, False, payload))
        length = codec.remaining_length(incoming, 1, 4)
        codec.check_header(incoming[0], length, 64)
        codec.check_body(0x40, body, 2)
        codec.publish_header(0x32, 9, publish_head)
        codec.puback(ack, publish_head, 5)
    assert mem_alloc() - before == 0, mem_alloc() - before

# MQTT 3.1.1 packets as bytes, with no I/O (OASIS standard, 29 October 2014; section numbers below
# are that document's). The client (microagent.mqtt) owns the buffers and the socket; this module
# only writes packets into a caller's bytearray and checks what the broker sent. Nothing here
# allocates on success: positions and lengths are small ints. It is frozen into a board's flash,
# where each function and class still costs heap, so it keeps to few of them and no defaults.
#
# Encoding. connect(), publish() and subscribe() write a packet's body from byte 5 (the longest
# fixed header) on, with the packet's first byte (2.2.1 type, 2.2.2 flags) just before it, and
# return its END; finish() then puts the remaining length (2.2.3) between the two, so the packet
# is the contiguous slice buf[start:end]. The last field of CONNECT (the password) and of PUBLISH
# (the payload) may be larger than the buffer: it is then left out, END is past len(buf), and the
# caller writes the field right after buf[start:end - len(field)].
#
# Decoding, of what a client receives (CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP): the caller
# reads the fixed header, gets the remaining length from remaining_length() and the size of what
# to read from check_header(), then the body into its buffer for check_body() or, for PUBLISH,
# publish_header(). Every byte from the network is hostile: anything malformed raises MQTTError
# "protocol error from the broker: <reason>".
try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

# Private consts cost a board no heap; microagent.mqtt has the public names.
_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)  # 3.8.1: SUBSCRIBE's flags are 0010
_SUBACK = const(0x90)
_PINGRESP = const(0xD0)
_MAX_REMAINING = const(268435455)  # 2.2.3: four 7-bit digits

_HEADROOM = const(5)  # the longest fixed header: 1 type byte + 4 remaining-length bytes

PINGREQ_PACKET = b"\xc0\x00"  # 3.12
DISCONNECT_PACKET = b"\xe0\x00"  # 3.14


class MQTTError(Exception):
    """The connection is unusable: refused, timed out, closed, or the broker broke the protocol
    (raised here for malformed packets, and for a packet that does not fit its buffer)."""


# ---- encoding ----------------------------------------------------------------------------------

def put_u16(buf, pos, value):
    """Writes VALUE big-endian (1.5.2) at POS; returns the end."""
    if pos + 2 > len(buf):
        raise MQTTError("packet does not fit the %d-byte buffer" % len(buf))
    buf[pos] = value >> 8
    buf[pos + 1] = value & 0xFF
    return pos + 2


def put_string(buf, pos, text):
    """Writes TEXT (str or bytes) as a UTF-8 string with its 2-byte length (1.5.3); returns the end."""
    data = text.encode() if isinstance(text, str) else text
    pos = put_u16(buf, pos, len(data))
    end = pos + len(data)
    if end > len(buf):
        raise MQTTError("packet does not fit the %d-byte buffer" % len(buf))
    buf[pos:end] = data
    return end


def connect(buf, client_id, keepalive_s, clean_session, user, password):
    """CONNECT (3.1); USER and PASSWORD (bytes) may be None. Returns the end: past len(BUF) when
    the password, the packet's last field, did not fit (see above)."""
    if not 0 <= keepalive_s <= 65535:
        raise MQTTError("keep alive %r s out of 0..65535 (3.1.2.10)" % (keepalive_s,))
    pos = _HEADROOM + 7
    if pos + 3 > len(buf):
        raise MQTTError("packet does not fit the %d-byte buffer" % len(buf))
    buf[_HEADROOM - 1] = _CONNECT
    buf[_HEADROOM:pos] = b"\x00\x04MQTT\x04"  # 3.1.2.1 protocol name "MQTT", 3.1.2.2 level 4
    flags = 0x02 if clean_session else 0  # 3.1.2.3: bit 1 clean session, 6 password, 7 user name
    if user is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    buf[pos] = flags
    pos = put_string(buf, put_u16(buf, pos + 1, keepalive_s), client_id)  # 3.1.2.10, 3.1.3.1
    if user is not None:
        pos = put_string(buf, pos, user)
    if password is None:
        return pos
    pos = put_u16(buf, pos, len(password))
    end = pos + len(password)
    if end <= len(buf):  # else the caller sends it (see above)
        buf[pos:end] = password
    return end


def publish(buf, topic, qos, pid, retain, dup, payload):
    """PUBLISH (3.3): the topic name, at QoS 1 the packet identifier PID, the PAYLOAD (bytes).
    Returns the end: past len(BUF) when the payload did not fit (see above)."""
    if qos != 0 and qos != 1:
        raise MQTTError("QoS %r not supported (0 or 1)" % (qos,))
    # 3.3.1: DUP bit 3, QoS bits 2-1, RETAIN bit 0
    buf[_HEADROOM - 1] = _PUBLISH | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    pos = put_string(buf, _HEADROOM, topic)
    if qos:
        pos = put_u16(buf, pos, pid)
    end = pos + len(payload)
    if end <= len(buf):  # else the caller sends it (see above)
        buf[pos:end] = payload
    return end


def subscribe(buf, pid, topic, qos):
    """SUBSCRIBE (3.8) to one topic filter: packet identifier, filter, requested QoS. Returns the
    end."""
    if qos != 0 and qos != 1:
        raise MQTTError("QoS %r not supported (0 or 1)" % (qos,))
    buf[_HEADROOM - 1] = _SUBSCRIBE
    pos = put_string(buf, put_u16(buf, _HEADROOM, pid), topic)
    if pos >= len(buf):
        raise MQTTError("packet does not fit the %d-byte buffer" % len(buf))
    buf[pos] = qos
    return pos + 1


def puback(ack, body, header):
    """PUBACK (3.4) into the 4 bytes of ACK for the QoS 1 PUBLISH whose variable header is
    BODY[0:HEADER] (publish_header): its packet identifier is the header's last 2 bytes."""
    ack[0] = _PUBACK
    ack[1] = 2
    ack[2] = body[header - 2]
    ack[3] = body[header - 1]


def finish(buf, end):
    """Puts the remaining length (2.2.3) of the body that ends at END (see above) between the body
    and the packet's first byte. Returns the packet's start."""
    remaining = end - _HEADROOM
    if remaining > _MAX_REMAINING:
        raise MQTTError("packet of %d bytes exceeds MQTT's remaining length limit of %d (2.2.3)"
                        % (remaining, _MAX_REMAINING))
    start = _HEADROOM - 2
    value = remaining >> 7
    while value:
        start -= 1
        value >>= 7
    buf[start] = buf[_HEADROOM - 1]
    pos = start + 1
    while True:  # 7 bits a byte, least significant first, bit 7 set when more follow
        digit = remaining & 0x7F
        remaining >>= 7
        if remaining:
            buf[pos] = digit | 0x80
            pos += 1
        else:
            buf[pos] = digit
            return start


# ---- decoding ----------------------------------------------------------------------------------

def remaining_length(buf, pos, end):
    """The remaining length (2.2.3) whose first byte is BUF[POS]: its value, or -1 when
    BUF[POS:END] holds only the start of it; MQTTError when a fourth byte says more follow."""
    value = 0
    shift = 0
    while pos < end:
        digit = buf[pos]
        value |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return value
        shift += 7
        if shift == 28:
            raise MQTTError("protocol error from the broker: malformed remaining length: more "
                            "than 4 bytes (2.2.3)")
        pos += 1
    return -1


def check_header(first, length, buf_size):
    """Checks the fixed header of a packet a client receives: type byte FIRST, remaining length
    LENGTH. Returns how many body bytes to read into a BUF_SIZE-byte buffer: the whole body, but
    for PUBLISH its first 2 (the topic length; see publish_header)."""
    kind = first & 0xF0
    reason = None
    if kind == _PUBLISH:
        qos = (first >> 1) & 0x03
        if qos > 1:  # 3.3.1.2: QoS 3 is malformed; this client never subscribes with QoS 2
            reason = "incoming PUBLISH with QoS %d" % qos
        elif length < (4 if qos else 2):
            reason = "PUBLISH shorter than its header"
        else:
            return 2
    elif first & 0x0F:  # 2.2.2: the other packets' flags are reserved, 0
        reason = "reserved flags set in packet type 0x%02x" % first
    elif kind == _CONNACK or kind == _PUBACK:  # 3.2.1, 3.4.1
        if length == 2:
            return 2
        reason = "packet type 0x%02x with length %d, expected 2" % (kind, length)
    elif kind == _SUBACK:  # 3.9.1: packet identifier and at least one return code
        if 3 <= length <= buf_size:
            return length
        reason = "SUBACK with length %d" % length
    elif kind == _PINGRESP:  # 3.13.1
        if not length:
            return 0
        reason = "PINGRESP with length %d" % length
    raise MQTTError("protocol error from the broker: " + (
        reason or "unexpected packet type 0x%02x from the broker" % kind))


def check_body(first, buf, length):
    """Checks the body BUF[0:LENGTH] of a CONNACK, PUBACK or SUBACK (type byte FIRST) and returns
    CONNACK's session-present flag (3.2.2.2; its return code, 3.2.2.3, is BUF[1]), or the packet
    identifier (2.3.1) of a PUBACK or SUBACK (whose first return code, 3.9.3, is BUF[2]: 0x00-0x02
    the granted QoS, 0x80 failure)."""
    if first == _CONNACK:
        if not buf[0] & 0xFE:  # 3.2.2.1: acknowledge flags bits 7-1 are reserved
            return buf[0]
        raise MQTTError("protocol error from the broker: CONNACK acknowledge flags 0x%02x: bits "
                        "7-1 are reserved" % buf[0])
    for pos in range(2, length if first == _SUBACK else 2):
        if buf[pos] > 2 and buf[pos] != 0x80:
            raise MQTTError("protocol error from the broker: SUBACK return code 0x%02x (3.9.3 "
                            "allows 0x00-0x02 and 0x80)" % buf[pos])
    return (buf[0] << 8) | buf[1]


def publish_header(first, length, buf):
    """The size of an incoming PUBLISH's variable header (3.3.2: topic name, then the packet
    identifier at QoS 1) from the topic length in BUF[0:2], checked against the remaining length
    LENGTH and the buffer that must hold it."""
    header = (4 if first & 0x06 else 2) + ((buf[0] << 8) | buf[1])
    if header > length:
        raise MQTTError("protocol error from the broker: PUBLISH topic longer than the packet")
    if header > len(buf):
        raise MQTTError("protocol error from the broker: PUBLISH topic longer than the %d-byte "
                        "buffer" % len(buf))
    return header

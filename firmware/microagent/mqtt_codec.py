# MQTT 3.1.1 packets as bytes, with no I/O (OASIS standard, 29 October 2014; section numbers below
# are that document's). The client (microagent.mqtt) owns the buffers and the socket; this module
# only writes packets into a caller's bytearray and checks what the broker sent. Nothing here
# allocates on success: positions and lengths are small ints.
#
# Encoding. A packet's body is written from HEADROOM on; finish() then puts the fixed header
# (2.2: the type byte and the 1..4-byte remaining length) right before the body, so the packet
# is the contiguous slice buf[start:end]. The last field of CONNECT (the password) and of PUBLISH
# (the payload) may be larger than the buffer: put_tail() copies it when it fits, else the caller
# writes it right after the packet and passes its size to finish() as TAIL.
#
# Decoding, of what a client receives (CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP): the caller
# reads the fixed header, gets the remaining length from remaining_length() and the body's plan
# from check_header(), then the body into its buffer. Every byte from the network is hostile:
# anything malformed raises PacketError with a one-line reason.
try:
    from micropython import const
except ImportError:  # CPython
    def const(value):
        return value

CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)  # 3.8.1: the flags of SUBSCRIBE's fixed header are 0010
SUBACK = const(0x90)
PINGREQ = const(0xC0)
PINGRESP = const(0xD0)
DISCONNECT = const(0xE0)

PINGREQ_PACKET = b"\xc0\x00"  # 3.12
DISCONNECT_PACKET = b"\xe0\x00"  # 3.14
HEADROOM = const(5)  # the longest fixed header: 1 type byte + 4 remaining-length bytes
MAX_REMAINING = const(268435455)  # 2.2.3: four 7-bit digits
_LEVEL_4 = b"\x00\x04MQTT\x04"  # 3.1.2.1 protocol name "MQTT", 3.1.2.2 protocol level 4


class PacketError(Exception):
    """Bytes that are not a valid MQTT 3.1.1 packet, or a packet that does not fit its buffer."""


# ---- encoding ----------------------------------------------------------------------------------

def _no_room(buf):
    raise PacketError("packet does not fit the %d-byte buffer" % len(buf))


def put_u16(buf, pos, value):
    """Writes VALUE big-endian (1.5.2) at POS; returns the end."""
    if pos + 2 > len(buf):
        _no_room(buf)
    buf[pos] = value >> 8
    buf[pos + 1] = value & 0xFF
    return pos + 2


def put_string(buf, pos, text):
    """Writes TEXT (str or bytes) as a UTF-8 string with its 2-byte length (1.5.3); returns the end."""
    data = text.encode() if isinstance(text, str) else text
    pos = put_u16(buf, pos, len(data))
    end = pos + len(data)
    if end > len(buf):
        _no_room(buf)
    buf[pos:end] = data
    return end


def put_tail(buf, pos, data):
    """Copies DATA, a packet's last field, to POS when it fits and returns the end; returns POS
    when it does not (the caller then sends DATA right after the packet: TAIL = len(DATA))."""
    end = pos + len(data)
    if end > len(buf):
        return pos
    buf[pos:end] = data
    return end


def connect(buf, client_id, keepalive_s, clean_session=True, user=None, password_size=-1):
    """CONNECT's variable header and payload (3.1.2, 3.1.3) up to the password's length field
    (PASSWORD_SIZE >= 0: a password follows; the caller adds its bytes with put_tail). Returns the
    end."""
    if not 0 <= keepalive_s <= 65535:
        raise PacketError("keep alive %r s out of 0..65535 (3.1.2.10)" % (keepalive_s,))
    pos = HEADROOM + len(_LEVEL_4)
    if pos + 3 > len(buf):
        _no_room(buf)
    buf[HEADROOM:pos] = _LEVEL_4
    flags = 0x02 if clean_session else 0  # 3.1.2.3: bit 1 clean session, 6 password, 7 user name
    if user is not None:
        flags |= 0x80
    if password_size >= 0:
        flags |= 0x40
    buf[pos] = flags
    pos = put_u16(buf, pos + 1, keepalive_s)
    pos = put_string(buf, pos, client_id)
    if user is not None:
        pos = put_string(buf, pos, user)
    if password_size >= 0:
        pos = put_u16(buf, pos, password_size)
    return pos


def publish_flags(qos, retain=False, dup=False):
    """PUBLISH's first byte (3.3.1): DUP bit 3, QoS bits 2-1, RETAIN bit 0."""
    if qos != 0 and qos != 1:
        raise PacketError("QoS %r not supported (0 or 1)" % (qos,))
    return PUBLISH | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)


def publish(buf, topic, pid=0):
    """PUBLISH's variable header (3.3.2): the topic name, then the packet identifier when PID is
    not 0 (QoS 1). The payload follows through put_tail. Returns the end."""
    pos = put_string(buf, HEADROOM, topic)
    if pid:
        pos = put_u16(buf, pos, pid)
    return pos


def subscribe(buf, pid, topic, qos):
    """SUBSCRIBE for one topic filter (3.8.2, 3.8.3): packet identifier, filter, requested QoS.
    Returns the end."""
    if qos != 0 and qos != 1:
        raise PacketError("QoS %r not supported (0 or 1)" % (qos,))
    pos = put_string(buf, put_u16(buf, HEADROOM, pid), topic)
    if pos >= len(buf):
        _no_room(buf)
    buf[pos] = qos
    return pos + 1


def puback(buf, pid):
    """PUBACK (3.4) for PID into the 4 bytes of BUF."""
    buf[0] = PUBACK
    buf[1] = 2
    buf[2] = pid >> 8
    buf[3] = pid & 0xFF


def finish(buf, first, end, tail=0):
    """Writes the fixed header (2.2) with type byte FIRST right before BUF[HEADROOM:END], the body,
    for a remaining length of the body plus TAIL bytes sent after it. Returns the packet's start."""
    remaining = end - HEADROOM + tail
    if remaining > MAX_REMAINING:
        raise PacketError("packet of %d bytes exceeds MQTT's remaining length limit of %d (2.2.3)"
                          % (remaining, MAX_REMAINING))
    start = HEADROOM - 1 - length_size(remaining)
    buf[start] = first
    pos = start + 1
    while True:  # 2.2.3: 7 bits a byte, least significant first, bit 7 set when more follow
        digit = remaining & 0x7F
        remaining >>= 7
        if remaining:
            buf[pos] = digit | 0x80
            pos += 1
        else:
            buf[pos] = digit
            return start


def length_size(remaining):
    """How many bytes the remaining length REMAINING takes (2.2.3): 1 to 4."""
    size = 1
    while remaining > 127:
        remaining >>= 7
        size += 1
    return size


# ---- decoding ----------------------------------------------------------------------------------

def _fail(reason):
    raise PacketError(reason)


def remaining_length(buf, pos, end):
    """The remaining length (2.2.3) whose first byte is BUF[POS]: its value, or -1 when
    BUF[POS:END] holds only the start of it. PacketError when a fourth byte says more follow."""
    value = 0
    shift = 0
    while pos < end:
        digit = buf[pos]
        value |= (digit & 0x7F) << shift
        if not digit & 0x80:
            return value
        shift += 7
        if shift == 28:
            _fail("malformed remaining length: more than 4 bytes (2.2.3)")
        pos += 1
    return -1


def check_header(first, length, buf_size):
    """Checks the fixed header of a packet a client receives: type byte FIRST, remaining length
    LENGTH. Returns how many body bytes to read into a BUF_SIZE-byte buffer: the whole body, but
    for PUBLISH its first 2 (the topic length; see publish_header)."""
    kind = first & 0xF0
    if kind == PUBLISH:
        qos = (first >> 1) & 0x03
        if qos > 1:  # 3.3.1.2: QoS 3 is malformed; this client never subscribes with QoS 2
            _fail("incoming PUBLISH with QoS %d" % qos)
        if length < (4 if qos else 2):
            _fail("PUBLISH shorter than its header")
        return 2
    if first & 0x0F:  # 2.2.2: reserved flags of these packet types are 0
        _fail("reserved flags set in packet type 0x%02x" % first)
    if kind == CONNACK or kind == PUBACK:  # 3.2.1, 3.4.1
        if length != 2:
            _fail("packet type 0x%02x with length %d, expected 2" % (kind, length))
        return 2
    if kind == SUBACK:  # 3.9.1: packet identifier and at least one return code
        if length < 3 or length > buf_size:
            _fail("SUBACK with length %d" % length)
        return length
    if kind == PINGRESP:  # 3.13.1
        if length:
            _fail("PINGRESP with length %d" % length)
        return 0
    _fail("unexpected packet type 0x%02x from the broker" % kind)


def packet_id(buf, pos):
    """The 2-byte packet identifier (2.3.1) at BUF[POS]."""
    return (buf[pos] << 8) | buf[pos + 1]


def publish_header(first, length, buf):
    """The size of an incoming PUBLISH's variable header (3.3.2: topic name, then the packet
    identifier at QoS 1) from the topic length in BUF[0:2], checked against the remaining length
    LENGTH and the buffer that must hold it."""
    header = 4 + packet_id(buf, 0) if first & 0x06 else 2 + packet_id(buf, 0)
    if header > length:
        _fail("PUBLISH topic longer than the packet")
    if header > len(buf):
        _fail("PUBLISH topic longer than the %d-byte buffer" % len(buf))
    return header


def connack(buf):
    """The session-present flag (3.2.2.2) of a CONNACK body in BUF[0:2]; its return code
    (3.2.2.3) is BUF[1]. PacketError when reserved acknowledge flags (bits 7-1) are set."""
    if buf[0] & 0xFE:
        _fail("CONNACK acknowledge flags 0x%02x: bits 7-1 are reserved" % buf[0])
    return buf[0] & 1


def suback(buf, length):
    """The first return code (3.9.3) of a SUBACK body BUF[0:LENGTH]: 0x00, 0x01, 0x02 (granted
    QoS) or 0x80 (failure); PacketError for any other value."""
    for pos in range(2, length):
        if buf[pos] > 2 and buf[pos] != 0x80:
            _fail("SUBACK return code 0x%02x (3.9.3 allows 0x00-0x02 and 0x80)" % buf[pos])
    return buf[2]

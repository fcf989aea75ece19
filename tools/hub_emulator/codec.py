"""MQTT 3.1.1 packets, server side: read one packet from a stream, parse it, encode replies.

Every parse error is a ProtocolError; the server answers one by closing that connection.
Only the packets a client may send are parsed; only the packets a server sends are encoded.
"""
import struct
from collections import namedtuple

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

# IoT Hub's device-to-cloud limit is 256 KB of payload; the topic and its property bag come on top.
DEFAULT_MAX_PACKET = 256 * 1024 + 16 * 1024

# CONNACK return codes (MQTT 3.1.1 section 3.2.2.3)
ACCEPTED = 0
BAD_PROTOCOL_VERSION = 1
IDENTIFIER_REJECTED = 2
BAD_USERNAME_OR_PASSWORD = 4
NOT_AUTHORIZED = 5

SUBACK_FAILURE = 0x80

Connect = namedtuple("Connect", "protocol_level client_id username password keepalive clean_session")
Publish = namedtuple("Publish", "topic payload qos retain dup packet_id")
Subscribe = namedtuple("Subscribe", "packet_id filters")  # filters: [(topic filter, qos)]
Unsubscribe = namedtuple("Unsubscribe", "packet_id filters")
Puback = namedtuple("Puback", "packet_id")
Pingreq = namedtuple("Pingreq", "")
Disconnect = namedtuple("Disconnect", "")


class ProtocolError(ValueError):
    """The peer sent something that is not a valid MQTT 3.1.1 packet (or one too big)."""


class UnsupportedProtocol(ProtocolError):
    """A well-formed CONNECT for a protocol level other than 3.1.1; answered with CONNACK rc 1."""


# What a client may send to an IoT Hub (no QoS 2 flow: PUBREC/PUBREL/PUBCOMP are errors too).
CLIENT_PACKETS = (CONNECT, PUBLISH, PUBACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT)


async def read_packet(reader, max_size=DEFAULT_MAX_PACKET, types=CLIENT_PACKETS):
    """Reads one packet: returns (type, flags, body) or None at a clean end of stream.

    A type not in TYPES is refused at its first byte, and the body is read only once its
    announced length is known to be within max_size, so junk costs the server next to nothing.
    """
    first = await reader.read(1)
    if not first:
        return None
    if first[0] >> 4 not in types:
        raise ProtocolError("unexpected packet type %d" % (first[0] >> 4))
    length = 0
    for shift in (0, 7, 14, 21):
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
    else:
        raise ProtocolError("remaining length longer than 4 bytes")
    if length > max_size:
        raise ProtocolError("packet of %d bytes exceeds the %d byte limit" % (length, max_size))
    body = await reader.readexactly(length) if length else b""
    return first[0] >> 4, first[0] & 0x0F, body


async def read_connect(reader, writer, max_size=DEFAULT_MAX_PACKET):
    """A session's first packet, which must be CONNECT (the hub's and DPS's alike): a Connect,
    or None at a clean end of stream. A protocol level other than MQTT 3.1.1 is answered with
    CONNACK 1 before the ProtocolError."""
    packet = await read_packet(reader, max_size, (CONNECT,))
    if packet is None:
        return None
    try:
        connect = parse(*packet)
    except UnsupportedProtocol as exc:
        writer.write(connack(BAD_PROTOCOL_VERSION))
        await writer.drain()
        raise ProtocolError("refused: %s is not MQTT 3.1.1" % exc) from None
    if not isinstance(connect, Connect):
        raise ProtocolError("first packet is not CONNECT")
    return connect


class _Cursor:
    """Reads fields from a packet body; running out of bytes is a ProtocolError."""

    def __init__(self, body):
        self.body = body
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.body):
            raise ProtocolError("packet ends inside a field")
        chunk = self.body[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("!H", self.take(2))[0]

    def binary(self):
        return self.take(self.u16())

    def text(self):
        raw = self.binary()
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("string field is not valid UTF-8") from None
        if "\x00" in value:
            raise ProtocolError("string field contains U+0000")
        return value

    def rest(self):
        return self.body[self.pos:]

    def at_end(self):
        return self.pos == len(self.body)


def parse(ptype, flags, body):
    """Parses a client-to-server packet into one of the namedtuples above."""
    cursor = _Cursor(body)
    if ptype == PUBLISH:
        return _parse_publish(flags, cursor)
    if ptype == CONNECT and flags == 0:
        return _parse_connect(cursor)
    if ptype == PUBACK and flags == 0 and len(body) == 2:
        return Puback(cursor.u16())
    if ptype == SUBSCRIBE and flags == 2:
        packet_id = cursor.u16()
        filters = []
        while not cursor.at_end():
            topic = cursor.text()
            options = cursor.u8()
            if options > 2:
                raise ProtocolError("SUBSCRIBE requested QoS byte %d" % options)
            filters.append((topic, options))
        if not filters:
            raise ProtocolError("SUBSCRIBE without a topic filter")
        return Subscribe(packet_id, filters)
    if ptype == UNSUBSCRIBE and flags == 2:
        packet_id = cursor.u16()
        filters = []
        while not cursor.at_end():
            filters.append(cursor.text())
        if not filters:
            raise ProtocolError("UNSUBSCRIBE without a topic filter")
        return Unsubscribe(packet_id, filters)
    if ptype == PINGREQ and flags == 0 and not body:
        return Pingreq()
    if ptype == DISCONNECT and flags == 0 and not body:
        return Disconnect()
    raise ProtocolError("unexpected packet type %d with flags %d and %d bytes" % (ptype, flags, len(body)))


def _parse_connect(cursor):
    protocol_name = cursor.text()
    level = cursor.u8()
    if (protocol_name, level) not in (("MQTT", 4), ("MQIsdp", 3), ("MQTT", 5)):
        raise ProtocolError("unknown protocol %r level %d" % (protocol_name, level))
    connect_flags = cursor.u8()
    keepalive = cursor.u16()
    if level != 4:
        raise UnsupportedProtocol("protocol level %d" % level)
    if connect_flags & 0x01:
        raise ProtocolError("CONNECT reserved flag set")
    client_id = cursor.text()
    if connect_flags & 0x04:  # a will: IoT Hub ignores it, but it must still parse
        cursor.text()
        cursor.binary()
    elif connect_flags & 0x38:
        raise ProtocolError("will QoS or retain set without a will")
    username = cursor.text() if connect_flags & 0x80 else None
    if connect_flags & 0x40 and username is None:
        raise ProtocolError("password flag without username flag")
    password = cursor.binary() if connect_flags & 0x40 else None
    if not cursor.at_end():
        raise ProtocolError("bytes after the CONNECT payload")
    return Connect(level, client_id, username, password, keepalive, bool(connect_flags & 0x02))


def _parse_publish(flags, cursor):
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    topic = cursor.text()
    if not topic or "+" in topic or "#" in topic:
        raise ProtocolError("PUBLISH topic is empty or has a wildcard")
    packet_id = cursor.u16() if qos else None
    if packet_id == 0:
        raise ProtocolError("PUBLISH packet id 0")
    return Publish(topic, cursor.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id)


def _packet(ptype, flags, body):
    header = bytearray([ptype << 4 | flags])
    length = len(body)
    while True:
        byte = length & 0x7F
        length >>= 7
        header.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(header) + body


def _text(value):
    raw = value.encode("utf-8")
    return struct.pack("!H", len(raw)) + raw


def connack(return_code, session_present=False):
    return _packet(CONNACK, 0, bytes([1 if session_present else 0, return_code]))


def puback(packet_id):
    return _packet(PUBACK, 0, struct.pack("!H", packet_id))


def suback(packet_id, granted):
    return _packet(SUBACK, 0, struct.pack("!H", packet_id) + bytes(granted))


def unsuback(packet_id):
    return _packet(UNSUBACK, 0, struct.pack("!H", packet_id))


def pingresp():
    return _packet(PINGRESP, 0, b"")


def publish(topic, payload):
    """A PUBLISH to a client, at QoS 0: MQTT lets a server deliver below the granted QoS."""
    return _packet(PUBLISH, 0, _text(topic) + payload)

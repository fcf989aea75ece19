# The compact encoding (docs/compact-encoding.md): CBOR (RFC 8949) with positional items, strings
# and addresses (4 bytes IPv4, 16 bytes IPv6) shared within a message through the registered stringref tags (256, 25),
# and timestamps as offsets. It shares the JSON encoder's message split (microagent.encode).
# Needs only array, struct and binascii.
import struct
from array import array
from binascii import unhexlify

from microagent import VERSION
from microagent import events
from microagent.encode import (_TIMED, COMPACT, JSON, MessageEncoder, MessageTooSmall,
                               _NoRoom, iso8601, new_guid)

# The format's version: the first element of every compact message.
COMPACT_VERSION = 1
# Every compact message opens with CBOR tag 256 (a stringref namespace) around an
# indefinite-length array; a JSON one opens with "{".
COMPACT_PREFIX = b"\xd9\x01\x00\x9f"
ENCODINGS = (JSON, COMPACT)


def is_compact(body):
    """True when BODY (bytes, bytearray or memoryview) is a compact message."""
    return len(body) > 3 and body[0] == 0xD9 and body[1] == 1 and body[2] == 0


# Event kinds with a positional item layout; any other event is written generically (kind 4).
KIND_NAMES = (events.PROCESS, events.CONNECTION, events.LOGIN, "DroppedEvents")
KIND_FIELDS = (events.PROCESS_FIELDS, events.CONNECTION_FIELDS, events.LOGIN_FIELDS,
               events.DROPPED_FIELDS)
KIND_HEADERS = (("Triggered", "Security"), ("Triggered", "Security"), ("Triggered", "Security"),
                ("Periodic", "Operational"))
KIND_GENERIC = 4
DROPPED_COLLECTORS = (events.PROCESS, events.CONNECTION, events.LOGIN, events.DNS)

# CBOR major types (the high three bits of an initial byte).
_UINT = 0x00
_NINT = 0x20
_BYTES = 0x40
_TEXT = 0x60
_ARRAY = 0x80
_MAP = 0xA0
_TAG = 0xC0
_NULL = 0xF6
_FALSE = 0xF4
_TRUE = 0xF5
_FLOAT64 = 0xFB
_STRINGREF = 25
# How many distinct strings a message remembers for sharing; later ones are still counted (the
# decoder numbers every string long enough), just written out again.
_SHARED_SLOTS = 128
_SHARED_INDEX = 256  # open-addressing index over the slots, a power of two
_SLOT_TEXT = 1
_SLOT_ADDRESS = 2

try:
    memoryview("")

    def _utf8(text):
        # MicroPython views a str as its UTF-8 bytes: no copy.
        return memoryview(text)
except TypeError:
    def _utf8(text):
        return text.encode()


def _shared_min_length(count):
    # stringref: a string enters the table when a reference to it would be shorter.
    if count < 24:
        return 3
    if count < 256:
        return 4
    if count < 65536:
        return 5
    return 7


def _uint_size(n):
    if n < 24:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    if n < 0x100000000:
        return 5
    return 9


class CompactEncoder(MessageEncoder):
    """The compact encoding: CBOR with positional items, shared strings and addresses, and
    timestamps as offsets. Items are written byte by byte into the buffer: a connection item
    whose values are numbers and already-seen addresses allocates nothing."""

    ENCODING = COMPACT
    CLOSE_EVENT = b"\xff"
    CLOSE_MESSAGE = b"\xff"

    def __init__(self, agent_id, sink, max_size=4096, utc_offset_minutes=0):
        if max_size < 256:
            raise MessageTooSmall("max message size %d cannot hold one event" % max_size)
        super().__init__(agent_id, sink, max_size, utc_offset_minutes)
        self._agent_id_bytes = None
        if len(agent_id) == 36 and agent_id.count("-") == 4:
            try:
                self._agent_id_bytes = unhexlify(agent_id.replace("-", ""))
            except ValueError:
                pass
        self._kind = KIND_GENERIC
        self._time_ms = 0
        self._previous_ms = 0
        self._scratch = array("H", bytes(16))  # an address's halves or groups
        # The message's string table (stringref): how many strings the decoder has numbered,
        # and which of them this encoder remembers (by reference to their text).
        self._count = 0
        self._used = 0
        self._index = array("h", [-1] * _SHARED_INDEX)
        self._slot_text = [None] * _SHARED_SLOTS
        self._slot_kind = bytearray(_SHARED_SLOTS)
        self._slot_number = array("i", bytes(4 * _SHARED_SLOTS))

    # ---- message, event and item structure ----

    def begin(self, event_time_ms, window_start_ms=None):
        MessageEncoder.begin(self, event_time_ms, window_start_ms)
        self._time_ms = event_time_ms

    def _open_message(self):
        self._count = 0
        self._used = 0
        index = self._index
        for i in range(_SHARED_INDEX):
            index[i] = -1
        for i in range(_SHARED_SLOTS):
            self._slot_text[i] = None
        self._put(COMPACT_PREFIX)
        self._uint(COMPACT_VERSION)
        if self._agent_id_bytes is not None:
            self._bytes(self._agent_id_bytes)
        else:
            self._text(self.agent_id)
        self._text(VERSION)
        self._int(int(self._time_ms))
        if self.utc_offset_minutes is None:
            self._simple(_NULL)
        else:
            self._int(self.utc_offset_minutes)
        self._int(int(self._time_ms) - int(self._window_start_ms))

    def _write_item(self, fields, values, limit):
        # As MessageEncoder's: False when the item would pass LIMIT (0: none, the buffer grows).
        self._limit = limit
        try:
            if not self._event_open:
                self._write_header(fields)
            self._write_fields(fields, values)
        except _NoRoom:
            return False
        self._event_open = True
        return True

    def _write_header(self, fields):
        name, category, event_type = self._event
        kind = KIND_GENERIC
        for k in range(len(KIND_NAMES)):
            if (fields is KIND_FIELDS[k] and name == KIND_NAMES[k]
                    and category == KIND_HEADERS[k][0] and event_type == KIND_HEADERS[k][1]):
                kind = k
        self._kind = kind
        self._previous_ms = 0
        self._simple(0x9F)  # an indefinite-length array, closed by CLOSE_EVENT
        self._uint(kind)
        self._bytes(unhexlify(new_guid().replace("-", "")))  # the GUID encode.py makes
        if kind == KIND_GENERIC:
            self._shared_text(name)
            self._shared_text(category)
            self._shared_text(event_type)

    def _write_fields(self, fields, values):
        kind = self._kind
        if kind == 1:
            self._connection(values)
        elif kind == 0:
            self._process(values)
        elif kind == 2:
            self._login(values)
        elif kind == 3:
            self._dropped(values)
        else:
            self._map(fields, values, fields in _TIMED)

    def _delta(self, offset_ms):
        self._int(offset_ms - self._previous_ms)
        self._previous_ms = offset_ms

    def _connection(self, values):
        # [dt, local address, remote address, local port, remote port, protocol * 4 +
        #  direction, bytes in, bytes out, hits (, dns hits (, host name))]
        extended = values[11]
        host_name = None
        length = 9
        if extended:
            host_name = (extended["host_name"] if len(extended) == 1 and "host_name" in extended
                         else extended)
            length = 11
        elif values[10]:
            length = 10
        self._head(_ARRAY, length)
        self._delta(values[0])
        self._address(values[1])
        self._address(values[2])
        self._optional_int(values[3])
        self._optional_int(values[4])
        self._uint(events.PROTOCOLS.index(values[5]) * 4 + events.DIRECTIONS.index(values[12]))
        self._optional_int(values[7])
        self._optional_int(values[8])
        self._optional_int(values[9])
        if length > 9:
            self._optional_int(values[10])
        if length > 10:
            self._value(host_name)

    def _process(self, values):
        # [dt, pid, ppid, uid, commandline, type, hits (, executable (, user name))]
        length = 9 if values[8] is not None else 8 if values[7] is not None else 7
        self._head(_ARRAY, length)
        self._delta(values[0])
        self._optional_int(values[1])
        self._optional_int(values[2])
        self._optional_int(values[3])
        self._optional_text(values[4])
        self._uint(events.PROCESS_TYPES.index(values[5]))
        self._optional_int(values[6])
        if length > 7:
            self._optional_text(values[7])
        if length > 8:
            self._optional_text(values[8])

    def _login(self, values):
        # [dt, operation, pid, user name, executable (, remote address)]
        length = 6 if values[5] is not None else 5
        self._head(_ARRAY, length)
        self._delta(values[0])
        self._uint(events.LOGIN_OPERATIONS.index(values[1]))
        self._optional_int(values[2])
        self._optional_text(values[3])
        self._optional_text(values[4])
        if length > 5:
            self._address(values[5])

    def _dropped(self, values):
        # [dt, collector, cache size, dropped, evicted (, unsupported)]
        length = 6 if values[5] is not None else 5
        self._head(_ARRAY, length)
        self._delta(values[0])
        collector = values[1]
        if collector in DROPPED_COLLECTORS:
            self._uint(DROPPED_COLLECTORS.index(collector))
        else:
            self._shared_text(collector)
        for i in range(2, length):
            self._optional_int(values[i])

    def _map(self, fields, values, timed=False):
        # TIMED: values[0] is an offset from the window start, written as the JSON encoder's
        # timestamp (a window collector's event without a positional kind: ConnectionOverflow).
        present = 0
        for i in range(len(fields)):
            if values[i] is not None:
                present += 1
        self._head(_MAP, present)
        for i in range(len(fields)):
            if values[i] is not None:
                self._shared_text(fields[i])
                if timed and i == 0:
                    self._shared_text(iso8601(self._window_start_ms + values[0]))
                else:
                    self._value(values[i])

    def _value(self, value):
        # Any JSON-like value, as the JSON encoder writes it (dict keys sorted).
        if value is None:
            self._simple(_NULL)
        elif value is True:
            self._simple(_TRUE)
        elif value is False:
            self._simple(_FALSE)
        elif isinstance(value, int):
            self._int(value)
        elif isinstance(value, float):
            self._simple(_FLOAT64)
            self._put(struct.pack(">d", value))
        elif isinstance(value, str):
            self._shared_text(value)
        elif isinstance(value, dict):
            keys = sorted(value)
            self._map(keys, [value[k] for k in keys])  # None omitted, as JSON does
        elif isinstance(value, (list, tuple)):
            self._head(_ARRAY, len(value))
            for element in value:
                self._value(element)
        else:
            self._shared_text(str(value))

    # ---- CBOR pieces ----

    def _room(self, size):
        # Where SIZE more bytes end: the common case (inside the limit) first; past the limit,
        # _NoRoom; past the buffer's end (an item larger than a message), the buffer grows.
        end = self._length + size
        if end <= self._limit:
            return end
        if self._limit:
            raise _NoRoom  # a new instance each time (see encode._NoRoom)
        if end > len(self.buffer):
            self._put(bytes(size))
            self._length -= size
        return end

    def _simple(self, byte):
        end = self._room(1)
        self.buffer[self._length] = byte
        self._length = end

    def _head(self, major, n):
        size = _uint_size(n)
        end = self._room(size)
        buffer = self.buffer
        at = self._length
        if size == 1:
            buffer[at] = major | n
        elif size == 2:
            buffer[at] = major | 24
            buffer[at + 1] = n
        elif size == 3:
            buffer[at] = major | 25
            buffer[at + 1] = n >> 8
            buffer[at + 2] = n & 0xFF
        else:
            buffer[at] = major | (26 if size == 5 else 27)
            i = end - 1
            while i > at:
                buffer[i] = n & 0xFF
                n >>= 8
                i -= 1
        self._length = end

    def _uint(self, n):
        self._head(_UINT, n)

    def _int(self, n):
        if n < 0:
            self._head(_NINT, -1 - n)
        else:
            self._head(_UINT, n)

    def _optional_int(self, n):
        if n is None:
            self._simple(_NULL)
        elif n < 0:
            self._head(_NINT, -1 - n)
        else:
            self._head(_UINT, n)

    def _optional_text(self, text):
        if text is None:
            self._simple(_NULL)
        else:
            self._shared_text(text)

    def _bytes(self, data):
        # A byte string that is never looked up again (GUIDs): numbered all the same.
        self._head(_BYTES, len(data))
        self._put(data)
        self._numbered(len(data))

    def _text(self, text):
        data = _utf8(text)
        self._head(_TEXT, len(data))
        self._put(data)
        self._numbered(len(data))

    def _numbered(self, length):
        # The decoder numbers every inline string at least this long (stringref rules).
        if length >= _shared_min_length(self._count):
            self._count += 1
            return self._count - 1
        return -1

    def _reference(self, number):
        self._head(_TAG, _STRINGREF)
        self._uint(number)

    def _remember(self, bucket, kind, number):
        slot = self._used
        if slot >= _SHARED_SLOTS or number < 0:
            return -1
        self._used = slot + 1
        self._index[bucket] = slot
        self._slot_kind[slot] = kind
        self._slot_number[slot] = number
        return slot

    def _lookup(self, text, kind):
        """Writes a reference and returns -1 when TEXT of KIND was already written in this
        message; else returns the free index bucket where it belongs (an int, not a tuple:
        nothing allocated per item)."""
        mask = _SHARED_INDEX - 1
        bucket = hash(text) & mask
        index = self._index
        while True:
            slot = index[bucket]
            if slot < 0:
                return bucket
            if self._slot_kind[slot] == kind and self._slot_text[slot] == text:
                self._reference(self._slot_number[slot])
                return -1
            bucket = (bucket + 1) & mask

    def _shared_text(self, text):
        bucket = self._lookup(text, _SLOT_TEXT)
        if bucket < 0:
            return
        data = _utf8(text)
        self._head(_TEXT, len(data))
        self._put(data)
        slot = self._remember(bucket, _SLOT_TEXT, self._numbered(len(data)))
        if slot >= 0:
            self._slot_text[slot] = text

    def _address(self, text):
        """An IPv4 address as a shared 4-byte string, an IPv6 one as a shared 16-byte string
        (other text as shared text). Looked up by its text (hashed and compared in C); parsed
        only when first written. The text is canonical (the engine's), so one address is one
        text."""
        bucket = self._lookup(text, _SLOT_ADDRESS)
        if bucket < 0:
            return
        halves = self._scratch
        n = events.parse_address(text, halves, 0)
        if not n:
            self._shared_text(text)
            return
        end = self._room(1 + 2 * n)
        buffer = self.buffer
        at = self._length
        buffer[at] = _BYTES | (2 * n)
        for i in range(n):
            buffer[at + 1 + 2 * i] = halves[i] >> 8
            buffer[at + 2 + 2 * i] = halves[i] & 0xFF
        self._length = end
        slot = self._remember(bucket, _SLOT_ADDRESS, self._numbered(2 * n))
        if slot >= 0:
            self._slot_text[slot] = text

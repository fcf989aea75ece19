# The wire formats (docs/spec.md section 5), shared by the firmware and the host agent: the envelope,
# events and payload items written into one preallocated buffer, split into messages of at most
# max_size bytes, never truncated. MessageEncoder writes JSON (the spec's encoding); the compact
# encoding (microagent.compact, docs/compact-encoding.md) inherits its split. Needs only json,
# os and binascii.
import json
import os
from binascii import hexlify

from microagent import VERSION
from microagent import events

MESSAGE_SCHEMA_VERSION = "1.0"
PAYLOAD_SCHEMA_VERSION = "1.0"
JSON = "json"
COMPACT = "compact"
# The message size range a configuration may ask for: IoT Hub refuses a device-to-cloud
# message over 256 KB (and disconnects the device), so a larger size could never be delivered.
MIN_MESSAGE_SIZE = 512
MAX_MESSAGE_SIZE = 256 * 1024
_CLOSING = 4  # the most bytes closing a message takes (CLOSE_EVENT + CLOSE_MESSAGE)


def guid(raw, version):
    """The GUID string of 16 bytes RAW, marked as RFC 4122 VERSION (4 random, 5 name-based)."""
    raw = bytearray(raw)
    raw[6] = (raw[6] & 0x0F) | (version << 4)
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = hexlify(raw).decode()
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


def new_guid():
    """A random GUID, from os.urandom since MicroPython has no uuid."""
    return guid(os.urandom(16), 4)


def _civil_from_days(days):
    # Howard Hinnant's days-to-civil algorithm: integer only, any port's epoch.
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (1 if month <= 2 else 0)
    return year, month, day


def iso8601(epoch_ms, utc_offset_minutes=None):
    """ISO 8601 with milliseconds: UTC with "Z" when UTC_OFFSET_MINUTES is None, else local time
    with its offset."""
    shift = utc_offset_minutes or 0
    local_ms = epoch_ms + shift * 60000
    seconds, ms = divmod(local_ms, 1000)
    days, second_of_day = divmod(seconds, 86400)
    year, month, day = _civil_from_days(days)
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    stamp = "%04d-%02d-%02dT%02d:%02d:%02d.%03d" % (year, month, day, hour, minute, second, ms)
    if utc_offset_minutes is None:
        return stamp + "Z"
    sign = "-" if shift < 0 else "+"
    return stamp + "%s%02d:%02d" % (sign, abs(shift) // 60, abs(shift) % 60)


class MessageTooSmall(Exception):
    pass


# Field tuples whose first value is the item's offset in ms from the window start.
_TIMED = (events.PROCESS_FIELDS, events.CONNECTION_FIELDS, events.LOGIN_FIELDS,
          events.DROPPED_FIELDS, events.OVERFLOW_FIELDS)


class MessageEncoder:
    """Writes a window's events into messages of at most MAX_SIZE bytes, calling SINK(buffer,
    length) for each finished message. The buffer is reused: SINK must copy what it keeps.

    Usage per window: begin(event_time_ms, window_start_ms); event(name, category,
    event_type); item(fields, values) ...; event(...) ...; finish() -> number of messages sent.
    For the window collectors' field tuples (events.*_FIELDS) values[0] is the item's offset
    in ms from the window start; a None value omits a field.
    """

    ENCODING = JSON
    # What a message needs after its last item: "]" payload, "}" event; "]" Events, "}" envelope.
    CLOSE_EVENT = b"]}"
    CLOSE_MESSAGE = b"]}"

    def __init__(self, agent_id, sink, max_size=4096, utc_offset_minutes=0):
        self.agent_id = agent_id
        self.sink = sink
        self.max_size = max_size
        self.utc_offset_minutes = utc_offset_minutes
        self.buffer = bytearray(max_size)
        self.envelope = ('{"AgentVersion":"%s","AgentId":"%s","MessageSchemaVersion":"%s",'
                         '"Events":[' % (VERSION, agent_id, MESSAGE_SCHEMA_VERSION)).encode()
        self.oversized = 0
        if len(self.envelope) + 400 > max_size:
            raise MessageTooSmall("max message size %d cannot hold one event" % max_size)
        self._length = 0
        self._event = None
        self._event_open = False
        self._messages = 0
        self._stamp_local = None
        self._stamp_utc = None
        self._limit = 0
        self._window_start_ms = 0

    def begin(self, event_time_ms, window_start_ms=None):
        """Starts a window's messages: EVENT_TIME_MS stamps the events, items' offsets count
        from WINDOW_START_MS (default: the event time)."""
        self._window_start_ms = event_time_ms if window_start_ms is None else window_start_ms
        self._stamp_local = iso8601(event_time_ms, self.utc_offset_minutes)
        self._stamp_utc = iso8601(event_time_ms)
        self._messages = 0
        self._length = 0
        self._event = None
        self._event_open = False

    def event(self, name, category, event_type):
        """Starts an event; its header is written with its first item (no empty events)."""
        if self._event_open:
            self._limit = 0  # closing an event always fits: the closing bytes are reserved
            self._put(self.CLOSE_EVENT)
            self._event_open = False
        self._event = (name, category, event_type)

    def item(self, fields, values):
        """Writes one payload item straight into the buffer: FIELDS names, VALUES in the same
        order. An item that does not fit closes the message and goes in the next."""
        if self._length:
            mark = self._length
            if self._write_item(fields, values, self.max_size - _CLOSING):
                return
            self._length = mark
            self._close_message()
        self._limit = 0
        self._open_message()
        self._write_item(fields, values, 0)

    def finish(self):
        if self._length:
            self._close_message()
        return self._messages

    def _open_message(self):
        self._put(self.envelope)

    def _write_item(self, fields, values, limit):
        """Writes separator, event header if needed, and the item, piece by piece (no large
        temporary string on a small heap). With a LIMIT, returns False as soon as the message
        would pass it; with none, the buffer grows for an item larger than a message."""
        self._limit = limit
        try:
            if self._event_open:
                self._put(b",")
            else:
                if self._length > len(self.envelope):
                    self._put(b",")
                self._write_header()
            separator = b"{"
            timed = fields in _TIMED
            for i in range(len(fields)):
                value = values[i]
                if value is not None:
                    if timed and i == 0:
                        value = iso8601(self._window_start_ms + value)
                    self._put(separator)
                    self._put(('"%s":%s' % (fields[i], _json_value(value))).encode())
                    separator = b","
            self._put(b"}" if separator == b"," else b"{}")
        except _NoRoom:
            return False
        self._event_open = True
        return True

    def _write_header(self):
        name, category, event_type = self._event
        self._put(b'{"Id":"')
        self._put(new_guid().encode())
        self._put(('","TimestampLocal":"%s","TimestampUTC":"%s","Category":"%s","Name":"%s",'
                   % (self._stamp_local, self._stamp_utc, category, name)).encode())
        self._put(('"EventType":"%s","IsEmpty":false,"PayloadSchemaVersion":"%s","Payload":['
                   % (event_type, PAYLOAD_SCHEMA_VERSION)).encode())

    def _close_message(self):
        self._limit = 0
        if self._event_open:
            self._put(self.CLOSE_EVENT)
        self._put(self.CLOSE_MESSAGE)
        self.sink(self.buffer, self._length)
        self._messages += 1
        self._length = 0
        self._event_open = False
        if len(self.buffer) != self.max_size:
            self.buffer = bytearray(self.max_size)

    def _put(self, data):
        end = self._length + len(data)
        if self._limit and end > self._limit:
            raise _NoRoom  # a new instance each time: see _NoRoom
        if end > len(self.buffer):
            # One item larger than a whole message: it goes alone in a message of its own size
            # (still far below IoT Hub's 256 KB, strings being capped) rather than be truncated.
            grown = bytearray(end + _CLOSING + 2)
            grown[:self._length] = self.buffer[:self._length]
            self.buffer = grown
            self.oversized += 1
        self.buffer[self._length:end] = data
        self._length = end


class _NoRoom(Exception):
    # Raised once per message that fills up, always as a new instance: MicroPython appends the
    # frames an exception passes through to the instance's traceback and never clears it, so
    # one preallocated instance raised at every message grew by 12 bytes a frame, for good
    # (about 100 bytes a window with a full 64-entry cache: the heap was not flat).
    pass


def _json_object(fields, values):
    parts = []
    for i in range(len(fields)):
        value = values[i]
        if value is not None:
            parts.append('"%s":%s' % (fields[i], _json_value(value)))
    return "{" + ",".join(parts) + "}"


def _json_value(value):
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        keys = sorted(value)
        return _json_object(keys, [value[k] for k in keys])
    if isinstance(value, (list, tuple)):
        return "[" + ",".join([_json_value(v) for v in value]) + "]"
    return _dump_string(value)


try:
    json.dumps("", ensure_ascii=False)

    def _dump_string(text):
        # Same bytes as MicroPython's json, which never escapes non-ASCII characters.
        return json.dumps(text, ensure_ascii=False)
except TypeError:
    _dump_string = json.dumps

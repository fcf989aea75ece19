# Reading messages back (host side only, never on a board: it needs cbor2): a message body and
# its IoT Hub properties -> the JSON message the JSON encoding would have produced, field for
# field. The compact layout is docs/compact-encoding.md; cbor2 parses the CBOR (and resolves the
# stringref tags), this module maps the positional items back to named fields.
import base64
import binascii
import io
import json
import math

import cbor2

from microagent import events
from microagent.compact import (COMPACT_VERSION, DROPPED_COLLECTORS, KIND_GENERIC, KIND_HEADERS,
                                KIND_NAMES, is_compact)
from microagent.encode import MESSAGE_SCHEMA_VERSION, PAYLOAD_SCHEMA_VERSION, iso8601

MAX_BODY_BYTES = 256 * 1024  # IoT Hub's device-to-cloud limit
CONTENT_TYPE = "$.ct"
JSON_TYPE = "application/json"
COMPACT_TYPE = "application/cbor"
_MAX_DEPTH = 16
# What a compact body may expand to, checked on cbor2's result before any output is built: a
# string reference (tag 25) or a shared value (tags 28/29) counts once per place it appears.
# The largest legal message (docs/compact-encoding.md, "Limits of the reader") has 262,144
# items at most (one byte each) and 112 MB of strings; these leave a clear margin above it.
MAX_NODES = 1 << 19
MAX_STRING_BYTES = 1 << 28
MAX_NESTING = 24
_MAX_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
_MAX_UINT64 = (1 << 64) - 1
_UTC_OFFSET_LIMIT = 24 * 60

class DecodeError(ValueError):
    """A body that is not a message we can read; str() is one line saying why."""


def format_guid(raw):
    """The text form of 16 GUID bytes read from a compact message (written by encode.guid)."""
    h = binascii.hexlify(raw).decode()
    return "%s-%s-%s-%s-%s" % (h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])


def decode_body(body, properties=None):
    """The JSON message (a dict) in BODY (bytes), compact or JSON: the content type in
    PROPERTIES ({"$.ct": ...}, as IoT Hub's system properties) decides, else the body's first
    bytes. DecodeError (one line) when it cannot be read."""
    body = bytes(body)
    if len(body) > MAX_BODY_BYTES:
        raise DecodeError("body of %d bytes exceeds IoT Hub's 256 KB" % len(body))
    content_type = (properties or {}).get(CONTENT_TYPE)
    if content_type == COMPACT_TYPE or (content_type is None and is_compact(body)):
        return decode_compact(body)
    if content_type not in (None, JSON_TYPE):
        raise DecodeError("unknown content type %r" % content_type)
    try:
        message = json.loads(body.decode("utf-8"), parse_constant=_no_constant,
                             parse_float=_finite_float)
    except DecodeError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError("not JSON: %s" % _first_line(exc))
    if not isinstance(message, dict):
        raise DecodeError("JSON body is not an object")
    return message


def _no_constant(name):
    raise DecodeError("not JSON: %s is not a number JSON allows" % name)


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise DecodeError("not JSON: %s is out of a float's range" % text[:40])
    return value


def message_text(message):
    """MESSAGE as the JSON encoder writes it (no spaces, UTF-8 kept); strict JSON (ValueError
    on a NaN or an infinity, which a decoded message never holds)."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def message_line(buffer, length):
    """A finished message (an encoder's sink arguments) as one text line: JSON as is, a
    compact body as base64."""
    body = bytes(buffer[:length])
    if is_compact(body):
        return base64.b64encode(body).decode("ascii")
    return body.decode("utf-8")


def body_of_line(line):
    """A message as one text line (replay's output: JSON, or base64 of a compact body) ->
    the body bytes. DecodeError when the line is neither."""
    text = line.strip()
    if text.startswith("{"):
        return text.encode("utf-8")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("neither JSON nor base64: %s" % _first_line(exc))


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def decode_compact(body):
    """The JSON message of compact BODY; DecodeError naming what is wrong."""
    body = bytes(body)
    if not is_compact(body):
        raise DecodeError("not a compact message (it must open with CBOR tag 256)")
    stream = io.BytesIO(body)
    try:
        top = cbor2.CBORDecoder(stream).decode()
    except cbor2.CBORDecodeEOF:
        raise DecodeError("truncated compact message (%d bytes)" % len(body))
    except RecursionError:
        raise DecodeError("corrupted compact message: nested too deep")
    except Exception as exc:  # cbor2 reports malformed CBOR with many exception types
        raise DecodeError("corrupted compact message: %s" % _first_line(exc))
    if stream.tell() != len(body):
        raise DecodeError("corrupted compact message: %d bytes after its end"
                          % (len(body) - stream.tell()))
    _check_expansion(top, len(body))
    try:
        return _message(top)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("corrupted compact message: nested too deep")
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as exc:
        raise DecodeError("corrupted compact message: %s" % _first_line(exc))


def _check_expansion(top, body_bytes):
    """Refuses TOP (cbor2's result, read from BODY_BYTES bytes) when it holds a value other
    than CBOR's plain ones or a non-finite float, or when, expanded, it would pass MAX_NODES
    values (or one value per byte of the body: only shared values, which our encoders never
    write, can make more), MAX_STRING_BYTES of strings or MAX_NESTING levels. Each array and
    map is measured once (a shared value is then counted by its size each time it appears), so
    a bomb costs no more than its bytes."""
    if type(top) is list:
        _measure(top, 0, {}, set(), min(MAX_NODES, body_bytes))


def _string_bytes(text):
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _measure(value, depth, sizes, open_now, max_nodes):
    """(values, string bytes, height) of VALUE, an array or a map at DEPTH; SIZES holds those
    of the arrays and maps measured already, OPEN_NOW the ids of those being measured; more
    than MAX_NODES values is refused."""
    key = id(value)
    known = sizes.get(key)
    if known is None:
        if key in open_now:
            raise DecodeError("corrupted compact message: a shared value contains itself")
        if depth >= MAX_NESTING:
            raise DecodeError("corrupted compact message: values nested deeper than %d"
                              % MAX_NESTING)
        open_now.add(key)
        nodes, strings, height = 1, 0, 0
        children = value if type(value) is list else _keys_and_values(value)
        for child in children:
            kind = type(child)
            if kind is str:
                nodes += 1
                strings += _string_bytes(child)
            elif kind is int or kind is bool or child is None:
                nodes += 1
            elif kind is bytes:
                nodes += 1
                strings += len(child)
            elif kind is list or kind is dict:
                n, b, h = _measure(child, depth + 1, sizes, open_now, max_nodes)
                nodes += n
                strings += b
                if h >= height:
                    height = h + 1
            elif kind is float:
                if not math.isfinite(child):
                    raise DecodeError("corrupted compact message: a float that is not finite "
                                      "(%r)" % child)
                nodes += 1
            else:
                raise DecodeError("corrupted compact message: unexpected %s value"
                                  % kind.__name__)
            if nodes > max_nodes or strings > MAX_STRING_BYTES:
                raise DecodeError(
                    "compact message too large expanded: over %d values or %d MB of strings "
                    "(shared values and string references counted where they appear)"
                    % (max_nodes, MAX_STRING_BYTES >> 20))
        open_now.discard(key)
        known = sizes[key] = (nodes, strings, height)
    if depth + known[2] >= MAX_NESTING:
        raise DecodeError("corrupted compact message: values nested deeper than %d"
                          % MAX_NESTING)
    return known


def _keys_and_values(mapping):
    for key, value in mapping.items():
        yield key
        yield value


def _need(condition, what):
    if not condition:
        raise DecodeError("corrupted compact message: %s" % what)


def _int(value, what, low=-_MAX_UINT64 - 1, high=_MAX_UINT64):
    _need(type(value) is int and low <= value <= high, "%s is not an integer in range" % what)
    return value


def _text(value, what):
    _need(type(value) is str, "%s is not text" % what)
    return value


def _address(value, what):
    if type(value) is bytes and len(value) == 4:
        return "%d.%d.%d.%d" % tuple(value)
    if type(value) is bytes and len(value) == 16:  # IPv6, in its canonical text
        return events.format_address([value[i] << 8 | value[i + 1] for i in range(0, 16, 2)],
                                     0, 8)
    return _text(value, what)


def _optional(value, read, what):
    return None if value is None else read(value, what)


def _message(top):
    _need(type(top) is list and len(top) >= 1, "not an array")
    version = top[0]
    if version != COMPACT_VERSION or type(version) is not int:
        raise DecodeError("unknown compact message version %r (this reader knows %d)"
                          % (version, COMPACT_VERSION))
    _need(len(top) >= 6, "envelope has %d of its 6 fields" % len(top))
    agent = top[1]
    if type(agent) is bytes and len(agent) == 16:
        agent_id = format_guid(agent)
    else:
        agent_id = _text(agent, "agent id")
    agent_version = _text(top[2], "agent version")
    time_ms = _int(top[3], "event time", 0, _MAX_MS)
    offset = top[4]
    if offset is not None:
        _int(offset, "UTC offset", -_UTC_OFFSET_LIMIT, _UTC_OFFSET_LIMIT)
    window_start_ms = time_ms - _int(top[5], "window start", -_MAX_MS, _MAX_MS)
    _need(0 <= window_start_ms <= _MAX_MS, "window start out of range")
    stamp_local = iso8601(time_ms, offset)
    stamp_utc = iso8601(time_ms)
    out_events = []
    for event in top[6:]:
        out_events.append(_event(event, window_start_ms, stamp_local, stamp_utc))
    return {"AgentVersion": agent_version, "AgentId": agent_id,
            "MessageSchemaVersion": MESSAGE_SCHEMA_VERSION, "Events": out_events}


def _event(event, window_start_ms, stamp_local, stamp_utc):
    _need(type(event) is list and len(event) >= 2, "an event is not an array [kind, id, ...]")
    kind = _int(event[0], "event kind", 0, KIND_GENERIC)
    guid = event[1]
    _need(type(guid) is bytes and len(guid) == 16, "event id is not 16 bytes")
    if kind == KIND_GENERIC:
        _need(len(event) >= 5, "generic event lacks its name, category and type")
        name = _text(event[2], "event name")
        category = _text(event[3], "event category")
        event_type = _text(event[4], "event type")
        items = [_generic_item(item) for item in event[5:]]
    else:
        name = KIND_NAMES[kind]
        category, event_type = KIND_HEADERS[kind]
        read = _ITEM_READERS[kind]
        items = []
        previous = 0
        for item in event[2:]:
            _need(type(item) is list, "%s item is not an array" % name)
            previous += _int(item[0] if item else None, "%s timestamp offset" % name,
                             -_MAX_MS, _MAX_MS)
            _need(0 <= window_start_ms + previous <= _MAX_MS, "%s timestamp out of range" % name)
            items.append(read(item, iso8601(window_start_ms + previous)))
    return {"Id": format_guid(guid), "TimestampLocal": stamp_local, "TimestampUTC": stamp_utc,
            "Category": category, "Name": name, "EventType": event_type, "IsEmpty": False,
            "PayloadSchemaVersion": PAYLOAD_SCHEMA_VERSION, "Payload": items}


def _fields(names, values):
    return {name: value for name, value in zip(names, values) if value is not None}


def _code(value, table, what):
    return table[_int(value, what, 0, len(table) - 1)]


def _process_item(item, timestamp):
    _need(7 <= len(item) <= 9, "ProcessCreate item has %d fields" % len(item))
    padded = item + [None] * (9 - len(item))
    return _fields(events.PROCESS_FIELDS, (
        timestamp, _optional(padded[1], _int, "process_id"),
        _optional(padded[2], _int, "parent_process_id"), _optional(padded[3], _int, "user_id"),
        _optional(padded[4], _text, "commandline"),
        _code(padded[5], events.PROCESS_TYPES, "process type"),
        _optional(padded[6], _int, "hit_count"), _optional(padded[7], _text, "executable"),
        _optional(padded[8], _text, "user_name")))


def _connection_item(item, timestamp):
    _need(9 <= len(item) <= 11, "ConnectionCreate item has %d fields" % len(item))
    padded = item + [None] * (11 - len(item))
    code = _int(padded[5], "protocol and direction", 0, 4 * len(events.PROTOCOLS) - 1)
    direction = code & 3
    _need(direction < len(events.DIRECTIONS), "direction code %d" % direction)
    local_port = _optional(padded[3], _int, "local_port")
    remote_port = _optional(padded[4], _int, "remote_port")
    extended = padded[10]
    if extended is None:
        extended = {}
    elif type(extended) is dict:
        extended = _generic_value(extended, 1)
    else:
        extended = {"host_name": _text(extended, "host_name")}
    dns_hits = padded[9]
    return _fields(events.CONNECTION_FIELDS, (
        timestamp, _address(padded[1], "local_address"),
        _address(padded[2], "remote_address"), local_port, remote_port,
        events.PROTOCOLS[code >> 2],
        events.application_protocol(local_port or 0, remote_port or 0, direction),
        _optional(padded[6], _int, "bytes_in"), _optional(padded[7], _int, "bytes_out"),
        _optional(padded[8], _int, "hit_count"),
        0 if dns_hits is None else _int(dns_hits, "dns_hit_count"), extended,
        events.DIRECTIONS[direction]))


def _login_item(item, timestamp):
    _need(5 <= len(item) <= 6, "Login item has %d fields" % len(item))
    padded = item + [None] * (6 - len(item))
    return _fields(events.LOGIN_FIELDS, (
        timestamp, _code(padded[1], events.LOGIN_OPERATIONS, "login operation"),
        _optional(padded[2], _int, "process_id"), _optional(padded[3], _text, "user_name"),
        _optional(padded[4], _text, "executable"),
        _optional(padded[5], _address, "remote_address")))


def _dropped_item(item, timestamp):
    _need(5 <= len(item) <= 6, "DroppedEvents item has %d fields" % len(item))
    padded = item + [None] * (6 - len(item))
    collector = padded[1]
    if type(collector) is int:
        collector = _code(collector, DROPPED_COLLECTORS, "collector")
    else:
        collector = _text(collector, "collector")
    return _fields(events.DROPPED_FIELDS, (
        timestamp, collector, _optional(padded[2], _int, "cache_size"),
        _optional(padded[3], _int, "dropped"), _optional(padded[4], _int, "evicted"),
        _optional(padded[5], _int, "unsupported")))


_ITEM_READERS = (_process_item, _connection_item, _login_item, _dropped_item)


def _generic_item(item):
    _need(type(item) is dict, "a payload item of a generic event is not a map")
    return _generic_value(item, 0)


def _generic_value(value, depth):
    _need(depth <= _MAX_DEPTH, "values nested deeper than %d" % _MAX_DEPTH)
    kind = type(value)
    if value is None or kind in (bool, str, float):
        return value
    if kind is int:
        return _int(value, "an integer")
    if kind is list:
        return [_generic_value(v, depth + 1) for v in value]
    if kind is dict:
        out = {}
        for key, v in value.items():
            out[_text(key, "a map key")] = _generic_value(v, depth + 1)
        return out
    raise DecodeError("corrupted compact message: unexpected %s value" % kind.__name__)

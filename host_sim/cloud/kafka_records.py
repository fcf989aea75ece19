"""A Kafka record as Event Hubs presents a device message IoT Hub routed to it -> StoredMessage
(the mapping and its sources: docs/event-hubs.md).

  value    the message body, bytes as the device sent them
  key      the partition key: the device id when the router set one
  headers  the AMQP message properties as plain strings (content-type, content-encoding,
           message-id, correlation-id), the message annotations (iothub-connection-device-id,
           iothub-connection-module-id, iothub-enqueuedtime, ...) and the application
           properties, the last two AMQP-encoded; both forms are accepted for every header.

Everything in a record is hostile: sizes are bounded before anything is decoded, text is
strict UTF-8, a device id must be one IoT Hub could have issued. A record that fails is
Malformed (one line, never the record's content beyond a short quoted name).
"""
import re
import struct
import time

from host_sim.cloud.alerts.messages import parse_time
from host_sim.cloud.alerts.sources import StoredMessage

MAX_BODY = 1024 * 1024          # Event Hubs' largest event (Premium/Dedicated); IoT Hub's is 256 KB
MAX_KEY = 256
MAX_HEADERS = 64
MAX_HEADER_NAME = 128
MAX_HEADER_VALUE = 4096
MAX_HEADERS_TOTAL = 64 * 1024

# IoT Hub device and module ids: up to 128 of these characters
IDENTITY = re.compile(r"[A-Za-z0-9\-.%_*?!(),:=@$']{1,128}\Z")

# Kafka header of an AMQP message property -> the hub's MQTT property bag name
SYSTEM_HEADERS = {"content-type": "$.ct", "content-encoding": "$.ce", "message-id": "$.mid",
                  "correlation-id": "$.cid"}
DEVICE_HEADER = "iothub-connection-device-id"
MODULE_HEADER = "iothub-connection-module-id"
ENQUEUED_HEADER = "iothub-enqueuedtime"
# Message annotations (IoT Hub's, Event Hubs'); the other AMQP properties are about the
# transport, not the device's message
ANNOTATION_PREFIXES = ("iothub-", "x-opt-")
OTHER_AMQP_PROPERTIES = {"user-id", "to", "subject", "reply-to", "absolute-expiry-time",
                         "creation-time", "group-id", "group-sequence", "reply-to-group-id"}
_MAX_MS = 253402300800000       # year 10000


class Malformed(ValueError):
    """Not a device message; str() says why in one line."""


def _name(raw):
    return raw[:40] + ("..." if len(raw) > 40 else "")


def _text(data, what):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("%s is not UTF-8" % what) from None


def header_value(data, name):
    """A header's bytes -> str, an int (ms, an AMQP timestamp) or None (AMQP null). AMQP 1.0
    encodings of string, symbol, timestamp and null are read (Event Hubs passes an AMQP
    producer's values so); anything else is taken as plain UTF-8 (what Event Hubs gives for
    the message properties, and what a Kafka producer writes)."""
    what = "header %r" % _name(name)
    if data is None or data == b"\x40":
        return None
    code = data[0] if data else None
    if code in (0xA1, 0xA3) and len(data) >= 2 and data[1] == len(data) - 2:
        return _text(data[2:], what)
    if code in (0xB1, 0xB3) and len(data) >= 5 and struct.unpack(">I", data[1:5])[0] == len(data) - 5:
        return _text(data[5:], what)
    if code == 0x83 and len(data) == 9:
        ms = struct.unpack(">q", data[1:])[0]
        if not 0 <= ms < _MAX_MS:
            raise Malformed("%s: timestamp out of range" % what)
        return ms
    if code in (0xA1, 0xA3, 0xB1, 0xB3, 0x83):
        raise Malformed("%s: AMQP value with a wrong length" % what)
    return _text(data, what)


def _identity(value, what):
    if not isinstance(value, str) or not IDENTITY.match(value):
        raise Malformed("%s is not an IoT Hub id" % what)
    return value


def _device(key, annotations):
    """device or device/module, from the annotations, else the key (routing may not set one)."""
    device = annotations.get(DEVICE_HEADER)
    if device is None:
        if not key:
            raise Malformed("no device id (no %s header and no key)" % DEVICE_HEADER)
        if len(key) > MAX_KEY:
            raise Malformed("key of %d bytes" % len(key))
        text = _text(key, "key")
        device, _, module = text.partition("/")
        _identity(device, "key")
        return text if not module else device + "/" + _identity(module, "key")
    _identity(device, DEVICE_HEADER)
    module = annotations.get(MODULE_HEADER)
    return device if module is None else device + "/" + _identity(module, MODULE_HEADER)


def read_record(key, value, headers, timestamp, offset):
    """(key bytes or None, value bytes, headers [(name, bytes)] or None, (type, ms) of the
    record, its offset) -> StoredMessage (id = the offset); Malformed when it is not a device
    message."""
    if value is None:
        raise Malformed("no body")
    if len(value) > MAX_BODY:
        raise Malformed("body of %d bytes (at most %d)" % (len(value), MAX_BODY))
    headers = headers or []
    if len(headers) > MAX_HEADERS:
        raise Malformed("%d headers (at most %d)" % (len(headers), MAX_HEADERS))
    total = 0
    for name, data in headers:
        total += len(name) + len(data or b"")
        if len(name) > MAX_HEADER_NAME or len(data or b"") > MAX_HEADER_VALUE:
            raise Malformed("header %r of %d bytes (at most %d)" % (
                _name(name), len(data or b""), MAX_HEADER_VALUE))
    if total > MAX_HEADERS_TOTAL:
        raise Malformed("headers of %d bytes (at most %d)" % (total, MAX_HEADERS_TOTAL))
    properties, annotations = {}, {}
    for name, data in headers:
        decoded = header_value(data, name)
        lower = name.lower()
        if lower in SYSTEM_HEADERS:
            if decoded is not None:
                if not isinstance(decoded, str):
                    raise Malformed("header %r is not text" % name)
                properties[SYSTEM_HEADERS[lower]] = decoded
        elif lower.startswith(ANNOTATION_PREFIXES):
            annotations[lower] = decoded
        elif lower not in OTHER_AMQP_PROPERTIES:
            if isinstance(decoded, int):
                raise Malformed("application property %r is not text" % _name(name))
            properties[name] = decoded
    device = _device(key, annotations)
    arrival = annotations.get(ENQUEUED_HEADER)
    if isinstance(arrival, str):
        arrival = parse_time(arrival)
        arrival = None if arrival is None else arrival * 1000
    if arrival is None and timestamp and timestamp[0] and timestamp[1] > 0:
        arrival = timestamp[1]
    return StoredMessage(offset, device, arrival / 1000.0 if arrival is not None else time.time(),
                         properties, bytes(value))

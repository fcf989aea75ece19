"""The one check of every message the cloud side reads (hub.db, an MQTT broker, Kafka, the
console): a decoded message against the message format (docs/spec.md section 5,
schema/message.schema.json), field by field, so that no rule, detection or page downstream
ever meets a value of the wrong type, a time it cannot format or an unbounded string.

What fails decides what is lost (docs/spec.md, "What the cloud refuses"):
- the envelope (not an object, no Events list, an event that is not an object with a Name and
  a Payload list of objects, AgentId or AgentVersion not short text): the message is refused;
- an event header (a time that does not parse or lies outside 1970..9999 UTC, a Category or
  EventType out of its values) or an unknown event Name: the event is dropped;
- a payload item field (wrong type, too long, out of range, not one of its values): the item
  is dropped.
Fields the format does not have are removed; a null field is read as absent. Plain Python
checks, not jsonschema: this runs on every message."""
import datetime
import re

from host_sim.cloud.alerts.addresses import canonical

MAX_TEXT = 2048          # the agents cut every string at 2,048 bytes (docs/spec.md section 1)
MAX_SHORT_TEXT = 128     # identifiers: AgentId, event Id, versions, enumerations
MAX_ID = (1 << 63) - 1   # pids and uids (uid -1: unknown)
MAX_COUNT = (1 << 64) - 1
MAX_LIST = 256           # nics, vlans and addresses of SystemInformation
MAX_PROPERTIES = 16      # a connection's extended_properties
LAST_SECOND = 253402300800   # 10000-01-01T00:00:00Z: times lie before it, and from 1970 on


class Refused(ValueError):
    """A message whose envelope is not one of ours; str() is the one-line reason."""


# ---- times -----------------------------------------------------------------------------------

_HOURS = {}


def parse_time(text):
    """ISO 8601 ('2026-01-01T00:00:00.000Z', or with an offset) -> epoch seconds (which may
    lie outside 1970..9999 once the offset is applied: in_range says), or None when it is not
    a time; never raises. The agent's own form is read with the epoch of its hour cached (the
    hot path of the burst rule)."""
    if not isinstance(text, str):
        return None
    if (len(text) == 24 and text[13] == ":" and text[16] == ":" and text[19] == "."
            and text[23] == "Z" and text[14:16].isdigit() and text[17:19].isdigit()
            and text[20:23].isdigit() and text[14] < "6" and text[17] < "6"):
        hour = _HOURS.get(text[:13])
        if hour is None:
            hour = _slow_parse(text[:13] + ":00:00Z")
            if hour is not None and len(_HOURS) < 100000:
                _HOURS[text[:13]] = hour
        if hour is not None:
            return hour + int(text[14:16]) * 60 + int(text[17:19]) + int(text[20:23]) / 1000.0
    return _slow_parse(text)


def _slow_parse(text):
    if len(text) > 64:
        return None
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=datetime.timezone.utc)
        return stamp.timestamp()
    except (ValueError, OverflowError):
        return None


def in_range(seconds):
    """Whether SECONDS (epoch) lies within 1970-01-01..9999-12-31 UTC, where every reader can
    format it."""
    return 0 <= seconds < LAST_SECOND


# ---- field checks: (kind, ...) tuples, read inline by _check_item (this is the hot path) -----

def _text(limit):
    return (str, limit)


def _one_of(*values):
    return (frozenset, frozenset(values))


def _integer(low, high):
    return (int, low, high)


def _check(test):
    """A check done by TEST(value) -> bool."""
    return (callable, test)


def _valid(spec, value):
    kind = spec[0]
    if kind is int:
        return type(value) is int and spec[1] <= value <= spec[2]
    if kind is str:
        return type(value) is str and len(value) <= spec[1]
    if kind is frozenset:
        return type(value) is str and value in spec[1]
    return spec[1](value)


# the agent's own time form; its hour (the first 13 characters) is looked up once
_AGENT_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z\Z")
_HOUR_VALID = {}


def _is_time(v):
    if type(v) is not str:
        return False
    if len(v) == 24 and _AGENT_TIME.match(v) is not None:
        valid = _HOUR_VALID.get(v[:13])
        if valid is None:
            seconds = parse_time(v[:13] + ":00:00.000Z")
            valid = seconds is not None and in_range(seconds)
            if len(_HOUR_VALID) < 100000:
                _HOUR_VALID[v[:13]] = valid
        return valid
    seconds = parse_time(v)
    return seconds is not None and in_range(seconds)


_time = _check(_is_time)


_IPV4 = re.compile(r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
                   r"(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\Z")


def _is_ipv4(v):
    return type(v) is str and len(v) <= 15 and _IPV4.match(v) is not None


# an address field: any valid spelling of IPv4 or IPv6, rewritten to its canonical text
# (host_sim.cloud.alerts.addresses) so every reader keys on one spelling; TEXT_LIMIT > 0 lets
# other text of at most that length through as it is (a login's host name)
def _address(text_limit=0):
    return ("address", text_limit)


_ADDRESS = _address()


def _is_extended_properties(v):
    return (type(v) is dict and len(v) <= MAX_PROPERTIES
            and all(type(k) is str and len(k) <= MAX_SHORT_TEXT and type(x) is str
                    and len(x) <= MAX_TEXT for k, x in v.items()))


_extended_properties = _check(_is_extended_properties)


def _texts(v):
    """One address as text, or a list of them."""
    if type(v) is list:
        return len(v) <= MAX_LIST and all(type(x) is str and len(x) <= MAX_TEXT for x in v)
    return type(v) is str and len(v) <= MAX_TEXT


_NIC_INFO = {"ipv4_address": (callable, _texts), "ipv6_address": (callable, _texts),
             "mac": _text(MAX_SHORT_TEXT)}


def _vlans(v):
    return type(v) is list and len(v) <= MAX_LIST and all(
        (type(x) is int and 0 <= x <= 4095) or (type(x) is str and len(x) <= MAX_SHORT_TEXT)
        for x in v)


def _nic_info(v):
    return type(v) is dict and all(type(k) is str and k in _NIC_INFO and _valid(_NIC_INFO[k], x)
                                   for k, x in v.items())


_NIC = {"name": _text(MAX_SHORT_TEXT), "type": _one_of("UNKNOWN", "ETH", "WIFI", "MOBILE",
                                                       "SATELLITE"),
        "vlans": (callable, _vlans), "vendor": _text(MAX_TEXT), "info": (callable, _nic_info)}


def _is_nics(v):
    return type(v) is list and len(v) <= MAX_LIST and all(
        type(nic) is dict and all(type(k) is str and k in _NIC and _valid(_NIC[k], x)
                                  for k, x in nic.items()) for nic in v)


_TEXT = _text(MAX_TEXT)
_PORT = _integer(0, 65535)
_ID = _integer(-MAX_ID - 1, MAX_ID)
_COUNT = _integer(0, MAX_COUNT)
_HITS = _integer(1, MAX_COUNT)
_PROTOCOL = _one_of("TCP", "UDP", "ICMP")

# event Name -> {field: check} of its payload items (the schema's $defs)
ITEM_FIELDS = {
    "ProcessCreate": {
        "timestamp": _time, "process_id": _ID, "parent_process_id": _ID, "user_id": _ID,
        "commandline": _TEXT, "type": _one_of("fork", "exec"), "hit_count": _HITS,
        "executable": _TEXT, "user_name": _TEXT},
    "ConnectionCreate": {
        "timestamp": _time, "local_address": _ADDRESS, "remote_address": _ADDRESS,
        "local_port": _PORT, "remote_port": _PORT, "transport_protocol": _PROTOCOL,
        "application_protocol": _text(MAX_SHORT_TEXT), "bytes_in": _COUNT, "bytes_out": _COUNT,
        "hit_count": _HITS, "dns_hit_count": _COUNT,
        "extended_properties": _extended_properties, "direction": _one_of("in", "out")},
    "Login": {
        "timestamp": _time, "operation": _one_of("Login", "Logout", "LoginFailed"),
        "process_id": _ID, "user_name": _TEXT, "executable": _TEXT, "remote_address": _address(MAX_TEXT)},
    "SystemInformation": {
        "hardware_vendor": _TEXT, "hardware_model": _TEXT, "os_dist": _TEXT,
        "os_version": _TEXT, "os_platform": _TEXT, "os_arch": _TEXT,
        "nics": _check(_is_nics)},
    "Baseline": {
        "check_id": _text(MAX_SHORT_TEXT), "check_result": _one_of("Fail", "Error"),
        "error": _TEXT, "description": _TEXT, "remediation": _TEXT,
        "severity": _one_of("Critical", "Important", "Warning", "Informational", "High",
                            "Medium", "Low")},
    "SBoM": {"name": _TEXT, "version": _TEXT, "vendor": _TEXT},
    "DroppedEvents": {
        "timestamp": _time, "collector": _one_of("ProcessCreate", "ConnectionCreate",
                                                 "ConnectionCreateIPv6", "Login", "DNS"),
        "cache_size": _HITS, "dropped": _COUNT, "evicted": _COUNT, "unsupported": _COUNT},
    "ConnectionOverflow": {
        "timestamp": _time, "remote_address": _ADDRESS, "remote_port": _PORT,
        "transport_protocol": _PROTOCOL, "hit_count": _COUNT, "bytes_in": _COUNT,
        "bytes_out": _COUNT, "scope": _one_of("destination", "address", "rest")},
}

# an event's header fields besides Name and Payload
EVENT_FIELDS = {
    "Id": _text(MAX_SHORT_TEXT), "TimestampLocal": _time, "TimestampUTC": _time,
    "Category": _one_of("Triggered", "Periodic"), "EventType": _one_of("Security", "Operational"),
    "IsEmpty": _check(lambda v: type(v) is bool), "PayloadSchemaVersion": _text(MAX_SHORT_TEXT)}

ENVELOPE_FIELDS = {"AgentVersion": _text(MAX_SHORT_TEXT), "AgentId": _text(MAX_SHORT_TEXT),
                   "MessageSchemaVersion": _text(MAX_SHORT_TEXT)}


# ---- the message -----------------------------------------------------------------------------

class Verdict:
    """What check_message removed from a message: DROPPED items (those of dropped events
    included, an empty dropped event counting one) and the first REASON (one line), or None."""
    __slots__ = ("dropped", "reason")

    def __init__(self):
        self.dropped = 0
        self.reason = None

    def drop(self, count, reason):
        self.dropped += count
        if self.reason is None:
            self.reason = reason


def check_message(message):
    """Checks MESSAGE (a decoded message dict) in place: bad items and events are removed,
    unknown fields removed. Returns a Verdict; Refused (one-line reason) when the envelope is
    not a security message's."""
    if not isinstance(message, dict):
        raise Refused("not a security message (not an object)")
    events = message.get("Events")
    if not isinstance(events, list):
        raise Refused("not a security message (no Events list)")
    for event in events:
        if not (isinstance(event, dict) and isinstance(event.get("Name"), str)
                and isinstance(event.get("Payload"), list)
                and all(isinstance(item, dict) for item in event["Payload"])):
            raise Refused("an event lacks a Name or a Payload list of objects")
    for key in list(message):
        if key == "Events":
            continue
        spec = ENVELOPE_FIELDS.get(key)
        value = message[key]
        if spec is None or value is None:
            del message[key]
        elif not _valid(spec, value):
            raise Refused("%s is not text of at most %d characters" % (key, MAX_SHORT_TEXT))
    verdict = Verdict()
    kept = []
    for number, event in enumerate(events, 1):
        if _check_event(event, number, verdict):
            kept.append(event)
    if len(kept) != len(events):
        events[:] = kept
    return verdict


def _check_event(event, number, verdict):
    """False (and VERDICT told) when EVENT must be dropped; its bad items are removed."""
    name = event["Name"]
    payload = event["Payload"]
    fields = ITEM_FIELDS.get(name)
    if fields is None:
        verdict.drop(max(1, len(payload)), "event %d: unknown event %s" % (number,
                                                                           repr(name[:40])))
        return False
    for key in list(event):
        if key == "Name" or key == "Payload":
            continue
        spec = EVENT_FIELDS.get(key)
        value = event[key]
        if spec is None or value is None:
            del event[key]
        elif not _valid(spec, value):
            verdict.drop(max(1, len(payload)), "event %d (%s): %s %s" % (
                number, name, key, _what_is_wrong(key)))
            return False
    kept = None
    for index, item in enumerate(payload):
        problem = _check_item(item, fields)
        if problem is None:
            if kept is not None:
                kept.append(item)
            continue
        if kept is None:
            kept = payload[:index]
        verdict.drop(1, "event %d (%s) item %d: %s %s" % (number, name, index + 1, problem,
                                                          _what_is_wrong(problem)))
    if kept is not None:
        payload[:] = kept
    return True


def _check_item(item, fields):
    """The first field of ITEM that fails its check, or None (unknown and null fields are
    removed). _valid inline: a call per field would double the cost."""
    strange = None
    for key, value in item.items():
        spec = fields.get(key)
        if spec is None or value is None:
            if strange is None:
                strange = []
            strange.append(key)
            continue
        kind = spec[0]
        if kind is int:
            if type(value) is not int or value < spec[1] or value > spec[2]:
                return key
        elif kind is str:
            if type(value) is not str or len(value) > spec[1]:
                return key
        elif kind is frozenset:
            if type(value) is not str or value not in spec[1]:
                return key
        elif kind == "address":
            if not _is_ipv4(value):
                address = canonical(value)
                if address is not None:
                    item[key] = address
                elif type(value) is not str or len(value) > spec[1]:
                    return key
        elif not spec[1](value):
            return key
    if strange is not None:
        for key in strange:
            del item[key]
    return None


_WRONG = {
    "timestamp": "is not a time within 1970..9999 UTC",
    "TimestampUTC": "is not a time within 1970..9999 UTC",
    "TimestampLocal": "is not a time within 1970..9999 UTC",
    "local_port": "is not a port (0..65535)", "remote_port": "is not a port (0..65535)",
    "local_address": "is not an address", "remote_address": "is not an address",
    "extended_properties": "is not a small object of texts",
    "nics": "is not a list of network interfaces",
}


def _what_is_wrong(field):
    known = _WRONG.get(field)
    if known is not None:
        return known
    return "has a value of the wrong type, too long or out of range"

"""Reading one stored or streamed message: the only place the consumer turns bytes into a
message, so other encodings (or a bounded reader) plug in here and nowhere else."""
import datetime

from microagent.decode import DecodeError, decode_body


class UnreadableMessage(ValueError):
    """A message the consumer skips; str() says why in one line."""


def read_message(body, properties):
    """BODY (bytes) and its PROPERTIES (dict, e.g. {"$.ct": "application/cbor"}) -> the message
    dict with a list of events, each a dict with "Name" and a list "Payload" of dicts. JSON and
    compact bodies are read by the agent core's decoder (the JSON rows either way).
    UnreadableMessage when it is not a security message we can read."""
    try:
        message = decode_body(body, properties)
    except DecodeError as exc:
        raise UnreadableMessage(str(exc)) from None
    events = message.get("Events") if isinstance(message, dict) else None
    if not isinstance(events, list):
        raise UnreadableMessage("not a security message (no Events list)")
    for event in events:
        if not (isinstance(event, dict) and isinstance(event.get("Name"), str)
                and isinstance(event.get("Payload"), list)
                and all(isinstance(item, dict) for item in event["Payload"])):
            raise UnreadableMessage("an event lacks a Name or a Payload list of objects")
    return message


_HOURS = {}


def parse_time(text):
    """ISO 8601 ('2026-01-01T00:00:00.000Z') -> epoch seconds, or None when it is not one.
    The agent's own form is read with the epoch of its hour cached (this is the hot path of
    the burst rule); anything else goes through datetime."""
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
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


def format_time(seconds):
    """Epoch seconds -> '2026-01-01T00:00:00.000Z'."""
    stamp = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_time(message, fallback):
    """The device's time of MESSAGE: its first event's TimestampUTC, else FALLBACK."""
    for event in message["Events"]:
        t = parse_time(event.get("TimestampUTC"))
        if t is not None:
            return t
    return fallback

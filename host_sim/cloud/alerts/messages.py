"""Reading one stored or streamed message: the only place the consumer turns bytes into a
message, so every reader (hub.db, an MQTT broker, Kafka, the console) gets messages decoded
within bounds (microagent.decode) and checked against the message format
(host_sim.cloud.validate)."""
import datetime

from microagent.decode import DecodeError, decode_body

from host_sim.cloud.validate import Refused, check_message, parse_time


class UnreadableMessage(ValueError):
    """A message the consumer skips; str() says why in one line."""


def read_checked(body, properties):
    """BODY (bytes) and its PROPERTIES (dict, e.g. {"$.ct": "application/cbor"}) -> (message,
    verdict): the message dict with a list of events, each a dict with "Name" and a list
    "Payload" of dicts, every field of the type and range the format gives it; the verdict
    (host_sim.cloud.validate.Verdict) counts the items dropped and says why the first was.
    UnreadableMessage when it is not a security message we can read."""
    try:
        message = decode_body(body, properties)
        return message, check_message(message)
    except (DecodeError, Refused) as exc:
        raise UnreadableMessage(str(exc)) from None


def read_message(body, properties):
    """The checked message of BODY and PROPERTIES (read_checked without its verdict)."""
    return read_checked(body, properties)[0]


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

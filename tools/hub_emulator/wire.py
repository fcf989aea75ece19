"""Message bodies as the agent's encodings define them: a compact (CBOR) body is decoded to the
JSON message it stands for by the agent core's reader (microagent.decode); any other body is
left to the caller's reader. The one place the hub side turns stored bodies into messages."""
from microagent.decode import COMPACT_TYPE, CONTENT_TYPE, DecodeError, decode_compact
from microagent.compact import is_compact

__all__ = ["DecodeError", "read_body"]


def read_body(payload, properties, read_other):
    """The message in PAYLOAD (bytes) given its IoT Hub PROPERTIES: a compact message as its
    JSON message (a dict), else READ_OTHER(payload). DecodeError (one line) for a compact
    body that is truncated, corrupted or of an unknown version."""
    if (properties or {}).get(CONTENT_TYPE) == COMPACT_TYPE or is_compact(payload):
        return decode_compact(payload)
    return read_other(payload)

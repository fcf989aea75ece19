"""Messages as tests compare them: parsed, with the random event ids blanked (a run's ids are
fresh UUIDs, everything else in a replay's output is determined by the trace)."""
import json


def without_ids(bodies):
    """BODIES: printed stdout (one JSON message per line; bytes must be strict UTF-8) or a
    list of message bodies."""
    if isinstance(bodies, bytes):
        bodies = bodies.decode()
    if isinstance(bodies, str):
        bodies = bodies.splitlines()
    out = []
    for body in bodies:
        message = json.loads(body)
        for event in message["Events"]:
            event["Id"] = "-"
        out.append(message)
    return out

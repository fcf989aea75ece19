"""Every device-to-cloud message the hub accepted: device, arrival time, topic, properties, payload."""
import datetime
import json

from hub_emulator import bounded_json


def add(db, device, topic, properties, payload):
    """Stores one message and commits it (durably) before returning; returns its id."""
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    cursor = db.execute("INSERT INTO messages (device, time, topic, properties, payload) VALUES (?, ?, ?, ?, ?)",
                        (device, now.replace("+00:00", "Z"), topic, json.dumps(properties), payload))
    return cursor.lastrowid


def decode_body(payload):
    """The payload as JSON when it is JSON within bounded_json's limits, else as text
    (undecodable bytes replaced): one device's body can never break a listing."""
    try:
        return bounded_json.loads(payload)
    except bounded_json.BoundsError:
        return bytes(payload).decode("utf-8", errors="replace")


def read(db, device=None):
    """Stored messages, oldest first, as dicts: id, device, time, topic, properties, payload (bytes)."""
    query = "SELECT id, device, time, topic, properties, payload FROM messages"
    rows = db.execute(query + (" WHERE device = ? ORDER BY id" if device else " ORDER BY id"),
                      (device,) if device else ())
    return [{"id": row[0], "device": row[1], "time": row[2], "topic": row[3],
             "properties": json.loads(row[4]), "payload": bytes(row[5])} for row in rows]

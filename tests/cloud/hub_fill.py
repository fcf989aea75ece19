"""A hub emulator store filled directly with messages the real host engine made (no TLS replay:
the store tests need the hub's store, not its transport)."""
import os

from alert_helpers import START, login_failed, merged, quiet, replay
from hub_emulator import store
from hub_emulator.database import open_db

ATTACKER = "203.0.113.9"
PROPERTIES = {"$.ct": "application/json"}


def attacked_bodies(tmp_path, address=ATTACKER, at=START + 7200, name="attacked.jsonl"):
    """Four quiet hours, 15 failed logins from ADDRESS in 70 s at AT and a connection to a new
    destination an hour later (an alert once an hour's learning is over)."""
    burst = [login_failed(at + 5 * i, address) for i in range(15)]
    miner = {"kind": "connection", "t": at + 3600, "protocol": "TCP",
             "local_address": "192.168.1.20", "local_port": 40100,
             "remote_address": "198.51.100.66", "remote_port": 3333, "bytes_in": 10,
             "bytes_out": 999, "direction": "out"}
    return replay(merged(quiet(hours=4), burst, [miner]), tmp_path, name=name)


def add(data_dir, device, bodies):
    db = open_db(str(data_dir))
    try:
        for body in bodies:
            store.add(db, device, "devices/%s/messages/events/" % device, PROPERTIES,
                      body.encode() if isinstance(body, str) else body)
    finally:
        db.close()


def filled(tmp_path):
    """A hub data dir: "attacked" (a brute force at 02:00), "quiet" and one unreadable message."""
    data_dir = os.path.join(str(tmp_path), "hub")
    os.makedirs(data_dir, exist_ok=True)
    add(data_dir, "attacked", attacked_bodies(tmp_path))
    add(data_dir, "quiet", replay(quiet(hours=4, seed=5), tmp_path, name="quiet.jsonl"))
    add(data_dir, "broken", [b"[" * 1000])
    return data_dir

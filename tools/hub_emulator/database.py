"""The emulator's SQLite file (DIR/hub.db), shared by the server and the CLI commands.

WAL lets `hub messages` and `hub set-desired` read and write while the server runs;
synchronous=FULL makes a commit durable before the server acknowledges what it stored.
"""
import contextlib
import datetime
import json
import os
import sqlite3
import time

FILE_NAME = "hub.db"
DEFAULT_HUB_NAME = "microagent-hub.local"

SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    id TEXT PRIMARY KEY, primary_key TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, time TEXT NOT NULL,
    topic TEXT NOT NULL, properties TEXT NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_device ON messages (device, id);
CREATE TABLE IF NOT EXISTS twins (
    device TEXT PRIMARY KEY, desired TEXT NOT NULL, desired_version INTEGER NOT NULL,
    reported TEXT NOT NULL, reported_version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS desired_patches (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, version INTEGER NOT NULL,
    patch TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hub_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, kind TEXT NOT NULL,
    hour INTEGER NOT NULL, first_time TEXT NOT NULL, last_time TEXT NOT NULL,
    count INTEGER NOT NULL, peers TEXT NOT NULL, detail TEXT NOT NULL,
    UNIQUE (device, kind, hour));
CREATE INDEX IF NOT EXISTS hub_events_by_kind ON hub_events (kind, hour);
CREATE TABLE IF NOT EXISTS enrollment_groups (
    name TEXT PRIMARY KEY, primary_key TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS x509_enrollment_groups (
    name TEXT PRIMARY KEY, ca_pem TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS registrations (
    registration_id TEXT PRIMARY KEY, enrollment_group TEXT NOT NULL, device_id TEXT NOT NULL,
    assigned_hub TEXT NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS x509_devices (id TEXT PRIMARY KEY, ca_pem TEXT, thumbprint TEXT);
"""

# hub_events: what the hub refused or noticed, one row per claimed device, kind and hour with a
# count, so a flood of bad CONNECTs updates rows instead of adding them. Claimed ids are anyone's
# to make up: past MAX_EVENT_DEVICES per kind and hour, the rest share one row.
HUB_EVENT_KINDS = ("invalid-sas-signature", "expired-sas-token", "unknown-device",
                   "refused-connect", "refused-topic", "device-connected-twice",
                   "refused-certificate", "dps-registration-refused")
MAX_EVENT_DEVICES = 256
MAX_EVENT_PEERS = 8          # newest distinct peer addresses kept per row
MAX_EVENT_TEXT = 256         # characters of a claimed device id or a detail kept
OTHER_DEVICES = "(other devices)"   # not a valid device id (space, parentheses): cannot clash
NO_CLIENT_ID = "(no client id)"


def _private_file(path):
    """Creates PATH mode 0600 if missing and makes it 0600 if not: it holds every device key."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def open_db(data_dir):
    """Opens (creating DIR and the schema if needed) the hub database in DATA_DIR.

    The database holds every device key in plain text, so it is 0600, and so are its -wal and
    -shm files: SQLite creates them with the database file's mode.
    """
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    path = os.path.join(data_dir, FILE_NAME)
    _private_file(path)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.chmod(path + suffix, 0o600)
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    db.execute("INSERT OR IGNORE INTO settings VALUES ('hub_name', ?)", (DEFAULT_HUB_NAME,))
    return db


def hub_name(db):
    return db.execute("SELECT value FROM settings WHERE name = 'hub_name'").fetchone()[0]


@contextlib.contextmanager
def transaction(db):
    """One write transaction, taking the write lock at once (the server and the CLI share the file)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _iso(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def record_hub_event(db, device, kind, peer, detail, now=None):
    """Counts one hub event (HUB_EVENT_KINDS) of the claimed DEVICE from PEER (an address) in the
    row of its hour; DETAIL says what happened and must never hold a token or a key."""
    now = time.time() if now is None else now
    hour = int(now // 3600) * 3600
    device = (device or NO_CLIENT_ID)[:MAX_EVENT_TEXT]
    with transaction(db):
        row = _event_row(db, device, kind, hour)
        if row is None and db.execute("SELECT COUNT(*) FROM hub_events WHERE kind = ? AND hour = ?",
                                      (kind, hour)).fetchone()[0] >= MAX_EVENT_DEVICES:
            device = OTHER_DEVICES
            row = _event_row(db, device, kind, hour)
        first, count, peers = row if row is not None else (_iso(now), 0, [])
        if peer in peers:
            peers.remove(peer)
        peers = (peers + [peer])[-MAX_EVENT_PEERS:]
        # REPLACE gives the row a new id: a reader following ids sees its new count
        db.execute("INSERT OR REPLACE INTO hub_events (device, kind, hour, first_time, last_time,"
                   " count, peers, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (device, kind, hour, first, _iso(now), count + 1, json.dumps(peers),
                    detail[:MAX_EVENT_TEXT]))


def _event_row(db, device, kind, hour):
    row = db.execute("SELECT first_time, count, peers FROM hub_events WHERE device = ? AND kind = ?"
                     " AND hour = ?", (device, kind, hour)).fetchone()
    return None if row is None else (row[0], row[1], json.loads(row[2]))

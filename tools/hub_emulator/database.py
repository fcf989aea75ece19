"""The emulator's SQLite file (DIR/hub.db), shared by the server and the CLI commands.

WAL lets `hub messages` and `hub set-desired` read and write while the server runs;
synchronous=FULL makes a commit durable before the server acknowledges what it stored.
"""
import contextlib
import os
import sqlite3

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
"""


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

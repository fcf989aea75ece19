"""The host agent's outbox: messages persisted in SQLite until the broker acknowledges them.

A restart or a broker outage loses nothing; a message is only dropped when it is older than
IothubModule_MessageTimeout (minutes), and then it is counted and logged. Every message gets its
message id ($.mid) when it is queued, so a resend after a reconnect or a restart carries the same
id and the cloud can drop the duplicate.

The file queues what the agent saw (command lines among it): it is made 0600 before SQLite opens
it, and SQLite gives its -wal and -shm files the same mode.
"""
import os
import sqlite3
import threading
import time
import uuid
from urllib.parse import quote

from host_sim.private_files import touch_private

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    mid TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    queued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class SqliteOutbox:
    """Outbox in the SQLite file PATH; TIMEOUT_MIN: minutes a message may wait (default 2880).

    Safe to use from paho's network thread and the caller's thread at once.
    """

    def __init__(self, path, timeout_min=2880, clock=time.time):
        self.path = path
        self.timeout_min = timeout_min
        self._clock = clock
        self._lock = threading.Lock()
        try:
            touch_private(path)
        except OSError as exc:
            raise ValueError("outbox %s: %s" % (path, exc.strerror)) from None
        for suffix in ("-wal", "-shm"):   # left by an older run with a wider mode
            if os.path.exists(path + suffix):
                os.chmod(path + suffix, 0o600)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ValueError("outbox %s: cannot open it as SQLite (%s)" % (path, exc)) from None

    def put(self, body, now=None):
        """Queues BODY (bytes); returns its message id."""
        mid = uuid.uuid4().hex
        with self._lock:
            self._db.execute("INSERT INTO messages (mid, body, queued_at) VALUES (?, ?, ?)",
                             (mid, bytes(body), self._clock() if now is None else now))
        return mid

    def pending(self, limit=100, after_seq=0):
        """Up to LIMIT queued (seq, mid, body) with seq > AFTER_SEQ, oldest first."""
        with self._lock:
            return self._db.execute("SELECT seq, mid, body FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after_seq, limit)).fetchall()

    def delete(self, seq):
        """The message SEQ was acknowledged."""
        with self._lock:
            self._db.execute("DELETE FROM messages WHERE seq = ?", (seq,))
            self._add("delivered", 1)

    def expire(self, now=None):
        """Drops messages older than the timeout; returns how many went."""
        cutoff = (self._clock() if now is None else now) - self.timeout_min * 60
        with self._lock:
            gone = self._db.execute("DELETE FROM messages WHERE queued_at < ?", (cutoff,)).rowcount
            if gone:
                self._add("expired", gone)
        return gone

    def _add(self, name, amount):
        self._db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, amount))

    def count(self):
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def counters(self):
        """{'delivered': n, 'expired': n} since the file was created."""
        with self._lock:
            found = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {"delivered": found.get("delivered", 0), "expired": found.get("expired", 0)}

    def close(self):
        with self._lock:
            self._db.close()


def summary(path, now=None):
    """What the outbox file PATH holds, read only (a running agent keeps writing it):
    {"pending", "bytes", "oldest_age_s" (None when empty), "delivered", "expired"}.
    ValueError naming PATH when it is not an outbox."""
    try:
        db = sqlite3.connect("file:%s?mode=ro" % quote(path), uri=True)
    except sqlite3.Error as exc:
        raise ValueError("cannot open the outbox %s (%s)" % (path, exc)) from None
    try:
        pending, size, oldest = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0), MIN(queued_at) FROM messages").fetchone()
        counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
    except sqlite3.Error as exc:
        raise ValueError("%s is not a microagent outbox (%s)" % (path, exc)) from None
    finally:
        db.close()
    now = time.time() if now is None else now
    return {"pending": pending, "bytes": size,
            "oldest_age_s": None if oldest is None else max(0.0, now - oldest),
            "delivered": counters.get("delivered", 0), "expired": counters.get("expired", 0)}

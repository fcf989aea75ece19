"""The SQLite backend: one file, created 0600, in WAL mode (readers such as the console do not
block the writer)."""
import contextlib
import os
import sqlite3

from host_sim.cloud.store.base import Store
from host_sim.cloud.store.errors import StoreError


class SqliteStore(Store):
    kind = "sqlite"
    types = {"real": "REAL", "bigint": "INTEGER"}

    def __init__(self, path):
        super().__init__(path)
        self.path = path
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            os.close(fd)
            self.db = sqlite3.connect(path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            # LIKE is the device filter's glob: device ids differ by case
            self.db.execute("PRAGMA case_sensitive_like=ON")
        except OSError as exc:
            raise StoreError("store %s: %s" % (path, exc.strerror)) from None
        except sqlite3.Error as exc:
            raise StoreError("store %s: not a usable SQLite file (%s)" % (path, exc)) from None

    def _execute(self, sql, params=()):
        return self.db.execute(sql, params)

    def _executemany(self, sql, rows):
        return self.db.executemany(sql, rows)

    @contextlib.contextmanager
    def _transaction(self):
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _has_table(self, name):
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (name,)).fetchone() is not None

    def _user_tables(self):
        return self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()

    def _errors(self):
        return (sqlite3.Error,)

    def size_bytes(self):
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = self.db.execute("PRAGMA page_size").fetchone()[0]
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        free = self.db.execute("PRAGMA freelist_count").fetchone()[0]
        return page_size * (pages - free)

    def close(self):
        self.db.close()


def open_sqlite(path, target=None):
    store = SqliteStore(os.path.abspath(path))
    try:
        if target is None:
            store.migrate()
        else:
            store.migrate(target)
    except BaseException:
        store.close()
        raise
    return store

"""The PostgreSQL backend (psycopg 3): several consumers write at once, each on its own
devices; migrations take an advisory lock so two starting at once do not both migrate."""
import contextlib
import urllib.parse

import psycopg

from host_sim.cloud.store.base import Store
from host_sim.cloud.store.errors import StoreError
from host_sim.cloud.store.dsn import redact

SCHEMA_LOCK = 0x6d6963726f  # pg_advisory_xact_lock key of the schema migration ("micro")


class PostgresStore(Store):
    kind = "postgresql"
    types = {"real": "DOUBLE PRECISION", "bigint": "BIGINT"}

    def __init__(self, dsn):
        super().__init__(redact(dsn))
        try:
            self.password = urllib.parse.unquote(urllib.parse.urlsplit(dsn).password or "")
        except ValueError:
            raise StoreError("--store: not a valid postgresql:// URL") from None
        try:
            self.db = psycopg.connect(dsn, autocommit=True, connect_timeout=15)
        except psycopg.Error as exc:
            raise StoreError("store %s: cannot connect: %s" % (self.dsn_shown,
                                                               self._message(exc))) from None
        except ValueError:  # psycopg's parse of a broken URL
            raise StoreError("--store: not a valid postgresql:// URL") from None
        self._in_migration = False

    def _sql(self, sql):
        return sql.replace("?", "%s")

    def _execute(self, sql, params=()):
        return self.db.execute(self._sql(sql), params)

    def _executemany(self, sql, rows):
        with self.db.cursor() as cursor:
            cursor.executemany(self._sql(sql), rows)

    @contextlib.contextmanager
    def _transaction(self):
        with self.db.transaction():
            yield

    def migrate(self, target=None):
        self._in_migration = True
        try:
            return super().migrate() if target is None else super().migrate(target)
        finally:
            self._in_migration = False

    def version(self):
        if self._in_migration:
            self.db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        return super().version()

    def _has_table(self, name):
        return self.db.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None

    def _user_tables(self):
        return self.db.execute("SELECT tablename FROM pg_tables WHERE schemaname = "
                               "current_schema()").fetchall()

    def _errors(self):
        return (psycopg.Error,)

    def _message(self, exc):
        text = " ".join(str(exc).split())
        return text.replace(self.password, "***") if self.password else text

    def size_bytes(self):
        return sum(self.db.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
                   for table in ("alerts", "devices", "device_tags", "hourly", "positions",
                                 "incidents", "recommendations"))

    def close(self):
        self.db.close()


def open_postgres(dsn, target=None):
    store = PostgresStore(dsn)
    try:
        store.migrate(target)
    except BaseException:
        store.close()
        raise
    return store

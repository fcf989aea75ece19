"""DSN -> a Store: a file path or sqlite:///abs/path (SQLite), or postgresql://... (psycopg 3)."""
import os
import urllib.parse

from host_sim.cloud.store.dsn import is_postgres, redact
from host_sim.cloud.store.errors import StoreError


def open_store(dsn, create=True):
    """The Store DSN names, its schema created or migrated to this code's version; CREATE=False:
    a SQLite file that does not exist is an error (readers must not make empty stores)."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise StoreError("--store: empty (give a file, sqlite:///path or postgresql://...; "
                         "--store alone reads $MICROAGENT_STORE)")
    if is_postgres(dsn):
        from host_sim.cloud.store.postgres import open_postgres
        return open_postgres(dsn)
    if dsn.startswith("sqlite:"):
        if not dsn.startswith("sqlite:///"):
            raise StoreError("--store %s: expected sqlite:///absolute/path" % dsn)
        path = urllib.parse.unquote(dsn[len("sqlite://"):])
    elif "://" in dsn:
        raise StoreError("--store %s: unknown scheme (sqlite:/// or postgresql://)"
                         % redact(dsn.split("://", 1)[0] + "://..."))
    else:
        path = dsn
    if not create and not os.path.isfile(path):
        raise StoreError("--store %s: no such store (`microagent alerts --store` makes it)" % path)
    from host_sim.cloud.store.sqlite import open_sqlite
    return open_sqlite(path)

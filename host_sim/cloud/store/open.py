"""DSN -> a Store: a file path or sqlite:///abs/path (SQLite), or postgresql://... (psycopg 3)."""
import urllib.parse

from host_sim.cloud.store.errors import StoreError

PG_SCHEMES = ("postgresql", "postgres")


def is_postgres(dsn):
    return dsn.split(":", 1)[0].lower() in PG_SCHEMES


def redact(dsn):
    """DSN as it may be shown: a PostgreSQL URL without its password."""
    if not is_postgres(dsn):
        return dsn
    try:
        parts = urllib.parse.urlsplit(dsn)
        if parts.password is None:
            return dsn
        netloc = parts.netloc.rpartition("@")[2]
        user = parts.netloc.rpartition("@")[0].partition(":")[0]
        return urllib.parse.urlunsplit(parts._replace(netloc="%s:***@%s" % (user, netloc)))
    except ValueError:
        return "postgresql://(unparsable URL)"


def open_store(dsn):
    """The Store DSN names, its schema created or migrated to this code's version."""
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
    from host_sim.cloud.store.sqlite import open_sqlite
    return open_sqlite(path)

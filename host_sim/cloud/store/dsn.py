"""Reading a store's DSN: which backend, and how it may be shown (never with its password)."""
import urllib.parse

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

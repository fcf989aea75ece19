import itertools
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "alerts"))

from needs_root import skip_unless_root  # noqa: E402
from pg_server import PostgresServer  # noqa: E402

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def postgres_server():
    """Debian's PostgreSQL, started for the session (as the postgres user, which needs root)."""
    skip_unless_root("runs Debian's PostgreSQL server as the postgres system user")
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_dsn(request, tmp_path):
    """A DSN of an empty store of each backend (a fresh database per test on PostgreSQL)."""
    if request.param == "sqlite":
        return str(tmp_path / "cloud.db")
    server = request.getfixturevalue("postgres_server")
    return server.create_database("test_%d" % next(_numbers))

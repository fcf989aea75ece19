"""A real PostgreSQL server (Debian's) for the store's tests: initdb and pg_ctl run as the
`postgres` system user (the server refuses root) on a cluster in a temporary folder of its own
(the checkout may sit in a 0700 folder postgres cannot enter), on a free port with its socket in
that folder; stopped at the end whatever happened."""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.parse

PASSWORD = "s3cret pass/word"   # a space and a slash: the URL quoting is exercised too


def bindir():
    try:
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                               timeout=30).stdout.strip()
        if found and os.path.exists(os.path.join(found, "pg_ctl")):
            return found
    except OSError:
        pass
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError("no PostgreSQL server binaries: run `make setup` (Debian's postgresql, "
                           "tools/system-packages.txt)")
    return os.path.dirname(candidates[-1])


def _reachable_tmp():
    """A temporary folder every user can pass through ($TMPDIR may be private, as may the
    checkout): the postgres user must reach its cluster."""
    for candidate in (tempfile.gettempdir(), "/tmp", "/var/tmp"):
        path, ok = os.path.abspath(candidate), True
        while ok and path != "/":
            ok = os.path.isdir(path) and os.stat(path).st_mode & 0o001
            path = os.path.dirname(path)
        if ok:
            return candidate
    raise RuntimeError("no temporary folder the postgres user can reach")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """start() -> self with .dsn(database) URLs (password authentication over TCP);
    create_database(name); stop()."""

    def __init__(self):
        self.bin = bindir()
        self.user = pwd.getpwnam("postgres")
        self.root = tempfile.mkdtemp(prefix="microagent-pg-", dir=_reachable_tmp())
        os.chmod(self.root, 0o700)
        os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.data = os.path.join(self.root, "data")
        self.port = None
        self.started = False

    def _as_postgres(self, args, **kwargs):
        return subprocess.run(["setpriv", "--reuid", str(self.user.pw_uid), "--regid",
                               str(self.user.pw_gid), "--init-groups", "--"] + args,
                              capture_output=True, text=True, cwd=self.root,
                              env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8",
                                   "HOME": self.root}, **kwargs)

    def _check(self, done, what):
        if done.returncode != 0:
            raise RuntimeError("%s failed: %s" % (what, (done.stderr or done.stdout).strip()))

    def start(self):
        password_file = os.path.join(self.root, "pw")
        with open(password_file, "w") as f:
            f.write(PASSWORD + "\n")
        os.chown(password_file, self.user.pw_uid, self.user.pw_gid)
        os.chmod(password_file, 0o600)
        self._check(self._as_postgres([os.path.join(self.bin, "initdb"), "-D", self.data,
                                       "-U", "microagent", "--pwfile", password_file,
                                       "-A", "scram-sha-256", "-E", "UTF8", "--no-sync"],
                                      timeout=120), "initdb")
        os.unlink(password_file)
        self.port = _free_port()
        options = "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off" % (self.port, self.root)
        self._check(self._as_postgres([os.path.join(self.bin, "pg_ctl"), "-D", self.data,
                                       "-l", os.path.join(self.root, "log"), "-o", options,
                                       "-w", "-t", "60", "start"], timeout=120), "pg_ctl start")
        self.started = True
        return self

    def dsn(self, database="postgres", password=PASSWORD):
        return "postgresql://microagent:%s@127.0.0.1:%d/%s" % (
            urllib.parse.quote(password, safe=""), self.port, database)

    def create_database(self, name):
        import psycopg
        with psycopg.connect(self.dsn(), autocommit=True) as db:
            db.execute('CREATE DATABASE "%s"' % name)
        return self.dsn(name)

    def stop(self):
        try:
            if self.started:
                self._as_postgres([os.path.join(self.bin, "pg_ctl"), "-D", self.data, "-m",
                                   "immediate", "-w", "stop"], timeout=120)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

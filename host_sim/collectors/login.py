"""Login collector: logins, logouts and failed logins from utmp/wtmp/btmp or the syslog auth log.

    LoginCollector(emit, root="/", method="Auto", from_start=False, poll_interval=1.0)

Methods:
  * "Utmp": `<root>/var/log/wtmp` (USER_PROCESS = Login, DEAD_PROCESS = Logout) and
    `<root>/var/log/btmp` (every record = LoginFailed): the binary login records that login,
    sshd, systemd-logind and friends write (glibc struct utmp, 384 bytes on Linux).
  * "Syslog": sshd's lines in `<root>/var/log/auth.log` (or /var/log/secure): "Accepted ... for
    USER from ADDR" = Login, "Failed ... for [invalid user] USER from ADDR" = LoginFailed,
    "Disconnected from user USER ADDR" = Logout.
  * "Auto": Utmp when wtmp exists, else Syslog.
Files are read incrementally: each poll() reads what was appended since the last one, and
rotation or truncation is followed (follow.py). With from_start=False (the agent) history
written before the collector started is skipped; tests pass True.

Events (docs/spec.md section 1): {"kind": "login", "t", "operation": "Login"|"Logout"|"LoginFailed",
"pid", "user_name", "executable" (the terminal: "pts/0", "tty1", "ssh:notty", or "sshd" for the
syslog method), "remote_address" (the remote IPv4/IPv6 address in canonical text (addresses.py):
RFC 5952 IPv6, IPv4-mapped IPv6 as IPv4, a zone dropped; 127.0.0.1 for a local login on a
terminal; left out when the remote host is known only by name)}. sshd's "from ::1" is the
IPv6 loopback address "::1", as utmp records it for the same login.

A corrupted utmp record (unknown type, negative pid or time) is skipped and counted in
stats["corrupt"]; a trailing partial record waits for the rest. Never an exception.
Driving (see runner.py): open(); poll() every poll_interval seconds; fileno() is None.
"""
import datetime
import logging
import os
import re
import socket
import struct
import time

from host_sim.collectors import addresses, rootfs
from host_sim.collectors.follow import FollowedFile
from host_sim.collectors.runner import EventCollector

# glibc struct utmp on Linux (x86_64, aarch64, arm, ...): 384 bytes, 32-bit time fields.
UTMP = struct.Struct("<hxxi32s4s32s256shhiii16s20x")
RECORD_SIZE = UTMP.size
USER_PROCESS = 7
DEAD_PROCESS = 8
LOGIN_PROCESS = 6
MAX_UT_TYPE = 9
LOCAL_ADDRESS = "127.0.0.1"
log = logging.getLogger(__name__)

WTMP = "/var/log/wtmp"
BTMP = "/var/log/btmp"
UTMP_FILE = "/var/run/utmp"
AUTH_LOGS = ("/var/log/auth.log", "/var/log/secure")


def _text(raw):
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class UtmpRecord:
    __slots__ = ("type", "pid", "line", "user", "host", "t", "address")


def remote_address(host, addr_v6):
    """The address a record came from, in canonical text: ut_addr_v6 if set (16 bytes for IPv6,
    an IPv4-mapped one as IPv4; IPv4 in the first 4 bytes, the rest zero), else ut_host if it is
    an address; 127.0.0.1 for a local login (no host, or an X display like ':0'); None for a
    remote host known only by name (the event then has no remote_address)."""
    host_address = addresses.canonical(host) if host else None
    if any(addr_v6[4:]):
        return addresses.from_bytes(addr_v6)
    if any(addr_v6[:4]):
        # An IPv6 address with twelve zero bytes at the end (2001:db8::) looks like IPv4 here;
        # ut_host, when it holds the address, tells them apart.
        if host_address is not None and ":" in host_address and \
                socket.inet_pton(socket.AF_INET6, host_address) == bytes(addr_v6):
            return host_address
        return addresses.from_bytes(addr_v6[:4])
    if not host or host.startswith(":"):
        return LOCAL_ADDRESS
    return host_address


def parse_utmp(data, stats=None):
    """Records in `data` (whole 384-byte records only); corrupted ones are skipped and counted."""
    records = []
    for offset in range(0, len(data) - RECORD_SIZE + 1, RECORD_SIZE):
        ut_type, pid, line, _id, user, host, _term, _exit, _session, sec, usec, addr = \
            UTMP.unpack_from(data, offset)
        if not 0 <= ut_type <= MAX_UT_TYPE or pid < 0 or sec < 0 or not 0 <= usec < 1000000:
            if stats is not None:
                stats["corrupt"] += 1
            continue
        r = UtmpRecord()
        r.type, r.pid, r.t = ut_type, pid, sec + usec / 1e6
        r.line, r.user, r.host = _text(line), _text(user), _text(host)
        r.address = remote_address(r.host, addr)
        records.append(r)
    return records


def login_event(operation, t, pid, user, executable, address):
    event = {"kind": "login", "t": t, "operation": operation, "pid": pid, "user_name": user,
             "executable": executable}
    if address is not None:
        event["remote_address"] = address
    return event


# -- syslog ------------------------------------------------------------------------------------
SYSLOG_LINE = re.compile(
    r"^(?P<stamp>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+) \S+ "
    r"sshd(?:-session)?\[(?P<pid>\d+)\]: (?P<message>.*)$")
SSHD_MESSAGES = (
    ("Login", re.compile(r"^Accepted \S+ for (?P<user>.+?) from (?P<addr>\S+) port \d+")),
    ("LoginFailed", re.compile(
        r"^Failed \S+ for (?:invalid user )?(?P<user>.*?) from (?P<addr>\S+) port \d+")),
    ("Logout", re.compile(r"^Disconnected from user (?P<user>.+?) (?P<addr>\S+) port \d+")),
)


def syslog_time(stamp, now):
    """Epoch seconds of a syslog time stamp: RFC 3339, or 'Mon dd HH:MM:SS' in local time in
    the most recent year that does not put it more than a day in the future."""
    if stamp[0].isdigit():
        return datetime.datetime.fromisoformat(stamp).timestamp()
    year = time.localtime(now).tm_year
    for candidate in (year, year - 1):
        t = time.mktime(time.strptime("%d %s" % (candidate, stamp), "%Y %b %d %H:%M:%S"))
        if t <= now + 86400:
            return t
    return t


def parse_auth_line(line, now):
    """A login event for an sshd line of the auth log, else None."""
    m = SYSLOG_LINE.match(line)
    if not m:
        return None
    for operation, pattern in SSHD_MESSAGES:
        found = pattern.match(m.group("message"))
        if found:
            try:
                t = syslog_time(m.group("stamp"), now)
            except ValueError:
                return None
            address = found.group("addr")
            address = LOCAL_ADDRESS if address == "localhost" else addresses.canonical(address)
            return login_event(operation, t, int(m.group("pid")), found.group("user"), "sshd",
                               address)
    return None


class LoginCollector(EventCollector):
    def __init__(self, emit, root="/", method="Auto", from_start=False, poll_interval=1.0):
        super().__init__(emit)
        if method not in ("Auto", "Utmp", "Syslog"):
            raise ValueError("login method must be Auto, Utmp or Syslog, not %r" % (method,))
        self.root = root
        self.requested_method = method
        self.method = None
        self.from_start = from_start
        self.poll_interval = poll_interval
        self.stats.update(corrupt=0)
        self._files = {}
        self._sessions = {}        # terminal line -> (user, remote address) of an open login

    def open(self):
        """Choose the method and open its files; a file that exists but cannot be read is
        logged once (the other files are still read)."""
        method = self.requested_method
        if method == "Auto":
            method = "Utmp" if os.path.exists(rootfs.path(self.root, WTMP)) else "Syslog"
        self.method = method
        if method == "Utmp":
            self._files = {name: FollowedFile(rootfs.path(self.root, name), self.from_start)
                           for name in (WTMP, BTMP)}
            self._remember_open_sessions()
        else:
            existing = [name for name in AUTH_LOGS if os.path.exists(rootfs.path(self.root, name))]
            name = existing[0] if existing else AUTH_LOGS[0]
            self._files = {name: FollowedFile(rootfs.path(self.root, name), self.from_start)}
        for name in self._files:
            filename = rootfs.path(self.root, name)
            if os.path.exists(filename) and not os.access(filename, os.R_OK, effective_ids=True):
                log.warning("login collector: cannot read %s (permission denied); its events "
                            "are not collected", name)

    def _remember_open_sessions(self):
        """Logins still open (in utmp) so their later logout can name the user."""
        try:
            data = rootfs.read_bytes(self.root, UTMP_FILE)
        except OSError:
            return
        for r in parse_utmp(data):
            if r.type == USER_PROCESS:
                self._sessions[r.line] = (r.user, r.address)

    def close(self):
        for f in self._files.values():
            f.close()
        self._files = {}

    def poll(self):
        emitted = 0
        for name, followed in self._files.items():
            segments = followed.read()
            for i, data in enumerate(segments):
                if self.method == "Utmp":
                    complete = len(data) - len(data) % RECORD_SIZE
                    emitted += self._utmp_records(name, data[:complete])
                else:
                    complete = data.rfind(b"\n") + 1
                    emitted += self._auth_lines(data[:complete])
                if i == len(segments) - 1:
                    followed.keep(data[complete:])
        return emitted

    def _utmp_records(self, name, data):
        emitted = 0
        for r in parse_utmp(data, self.stats):
            if name == BTMP:
                self._emit(login_event("LoginFailed", r.t, r.pid, r.user, r.line, r.address))
            elif r.type == USER_PROCESS:
                self._sessions[r.line] = (r.user, r.address)
                self._emit(login_event("Login", r.t, r.pid, r.user, r.line, r.address))
            elif r.type == DEAD_PROCESS and (r.line in self._sessions or r.user):
                user, address = self._sessions.pop(r.line, (r.user, r.address))
                self._emit(login_event("Logout", r.t, r.pid, r.user or user, r.line, address))
            else:
                continue
            emitted += 1
        return emitted

    def _auth_lines(self, data):
        emitted = 0
        now = time.time()
        for line in data.decode("utf-8", "replace").splitlines():
            event = parse_auth_line(line, now)
            if event is not None:
                self._emit(event)
                emitted += 1
        return emitted

"""Process collector: exec events with their argv from audit, fork and exec events from the
netlink process connector, /proc polling as the last fallback.

    ProcessCollector(emit, root="/", mode="Auto", polling_interval=0.1)

`mode` is the Defender config key `Process_Mode`: "Audit" (exec records of the kernel's audit
subsystem, audit.py: the command line comes with the event, so it is exact even for a process
that lived a microsecond; forks from the process connector when it is available), "Netlink"
(the kernel's process connector; sees every fork/exec, even of processes that live a
millisecond), "Polling" (scan `<root>/proc` every `polling_interval` seconds,
`Process_PollingInterval`; misses processes that start and end between two scans, and reports
what it finds as `exec`), or "Auto": Audit, then Netlink, then Polling; each fallback is logged
once per open() with its reason, and `collector.source` says what is in use.
The connector needs CAP_NET_ADMIN on most kernels (Linux 6.6 let any process subscribe; 6.18
refuses an unprivileged one with EPERM), and works only from the initial user namespace:
inside a container the kernel ignores the subscription or refuses it. open() therefore
waits for the kernel's acknowledgement of the subscription (2 s at most) and treats a refusal
or a missing answer as "not available".

Driving (see runner.py): `open()`, then `fileno()` + `read()` in netlink mode (fileno() is None
and poll_interval is set in polling mode), `poll()` every `poll_interval` seconds (None in netlink
mode), or `start()` / `stop()` for a thread. `collector.mode` says which mode is in use after open().
In audit mode fileno() is an epoll descriptor over the audit and connector sockets, and poll()
(every 2 s) puts our audit rule back if someone removed it.

Events are raw trace events (docs/spec.md section 1):
    {"kind": "process", "t", "type": "fork"|"exec", "pid", "ppid", "uid", "commandline",
     "executable", "user_name"}
Thread creation is not reported (only new processes). The connector's events carry
only pids: the rest is read from /proc at once. A process that exited already but was not yet
reaped (a zombie) shows as "[name]"; one that is gone entirely is still reported, with an empty
command line, uid -1, executable "" and the ppid from its fork event (0 when unknown);
`stats["unreadable"]` counts those.

stats: "events" emitted; "lost" events the kernel dropped because our socket buffer overflowed
(ENOBUFS), computed exactly from the connector's per-CPU sequence numbers once a first event
from that CPU has been seen (and counted when the next event from that CPU arrives);
"overruns" the number of ENOBUFS errors; "unreadable" as above.
"""
import errno
import logging
import os
import random
import re
import select
import socket
import struct
import time

from host_sim.collectors import nlsocket, rootfs
from host_sim.collectors.audit import AuditExecSource
from host_sim.collectors.runner import EventCollector

log = logging.getLogger(__name__)

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_NONE = 0x00000000                 # an acknowledgement of a subscription
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
NLMSG_DONE = 3

NLMSGHDR = struct.Struct("=IHHII")          # len, type, flags, seq, pid
CN_MSG = struct.Struct("=IIIIHH")            # idx, val, seq, ack, len, flags
PROC_EVENT = struct.Struct("=IIQ")           # what, cpu, timestamp_ns (CLOCK_MONOTONIC)
FORK_DATA = struct.Struct("=IIII")           # parent pid, parent tgid, child pid, child tgid
EXEC_DATA = struct.Struct("=II")             # pid, tgid
EXIT_DATA = struct.Struct("=II")             # pid, tgid
HEADER_LEN = NLMSGHDR.size + CN_MSG.size

RECEIVE_BUFFER = 8 * 1024 * 1024
SO_RCVBUFFORCE = 33                          # root may exceed net.core.rmem_max
ACK_TIMEOUT = 2.0
MAX_TRACKED_PARENTS = 65536
MODES = ("Auto", "Audit", "Netlink", "Polling")
AUDIT_CHECK_INTERVAL = 2.0                   # seconds between checks that our audit rule is there


# IoT Hub credentials on a command line (a connection string's SharedAccessKey, a SAS token's
# sig): the agent's own, or a device tool's. They must not travel in a message.
SECRET = re.compile(r"(SharedAccessKey=|SharedAccessSignature=|\bsig=)[^;&\s\"']+")


def redact_secrets(commandline):
    if "SharedAccess" not in commandline and "sig=" not in commandline:
        return commandline
    return SECRET.sub(r"\1[redacted]", commandline)


def read_commandline(root, pid):
    """/proc/PID/cmdline as one string: NUL separators become spaces, bad UTF-8 is replaced,
    IoT Hub credentials are redacted."""
    raw = rootfs.read_bytes(root, "/proc/%d/cmdline" % pid)
    return redact_secrets(raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace"))


def read_status(root, pid):
    """(ppid, real uid) from /proc/PID/status."""
    status = rootfs.read_bytes(root, "/proc/%d/status" % pid)
    return _status_field(status, b"\nPPid:"), _status_field(status, b"\nUid:")


def _status_field(status, name):
    start = status.find(name)
    if start < 0:
        return -1
    return int(status[start + len(name):status.index(b"\n", start + 1)].split()[0])


def read_executable(root, pid):
    try:
        return os.readlink(rootfs.path(root, "/proc/%d/exe" % pid))
    except OSError:
        return ""


class ProcessReader:
    """Turns a pid into a process event by reading <root>/proc."""

    def __init__(self, root="/"):
        self.root = root
        self.users = rootfs.UserNames(root)

    def event(self, pid, kind, t, ppid_known=0):
        """The event for `pid`, or None when the process is already gone. The command line is
        read first (it matters most); if the process ends right after, uid is -1 and the ppid
        is `ppid_known` (from its fork event; 0, "no parent", when unknown)."""
        try:
            commandline = read_commandline(self.root, pid)
        except OSError:
            return None
        if not commandline:                  # a kernel thread, or a zombie: show its name
            name = rootfs.read_first_line(self.root, "/proc/%d/comm" % pid)
            if not name:
                return None
            commandline = "[%s]" % name
        try:
            ppid, uid = read_status(self.root, pid)
        except (OSError, ValueError, IndexError):
            ppid, uid = ppid_known, -1
        return {"kind": "process", "t": t, "type": kind, "pid": pid, "ppid": ppid, "uid": uid,
                "commandline": commandline, "executable": read_executable(self.root, pid),
                "user_name": self.users.name(uid) if uid >= 0 else ""}


def unreadable_event(pid, kind, t, ppid):
    """A process gone before /proc could be read: all we know is its pid and parent."""
    return {"kind": "process", "t": t, "type": kind, "pid": pid, "ppid": ppid, "uid": -1,
            "commandline": "", "executable": "", "user_name": ""}


def list_pids(root):
    return {int(name) for name in os.listdir(rootfs.path(root, "/proc")) if name.isdigit()}


def start_time(root, pid):
    """Field 22 of /proc/PID/stat (start time in clock ticks): tells a reused pid apart."""
    raw = rootfs.read_bytes(root, "/proc/%d/stat" % pid)
    return int(raw[raw.rindex(b")") + 2:].split()[19])


def wall_clock(monotonic_ns):
    """Epoch seconds of a CLOCK_MONOTONIC kernel timestamp (the connector's event time)."""
    return time.time() - (time.monotonic_ns() - monotonic_ns) / 1e9


class ProcessCollector(EventCollector):
    def __init__(self, emit, root="/", mode="Auto", polling_interval=0.1,
                 receive_buffer=RECEIVE_BUFFER):
        super().__init__(emit)
        if mode not in MODES:
            raise ValueError("Process_Mode must be Auto, Audit, Netlink or Polling, not %r"
                             % (mode,))
        self.root = root
        self.requested_mode = mode
        self.mode = None
        self.source = ""
        self.polling_interval = polling_interval
        self.receive_buffer = receive_buffer
        self.reader = ProcessReader(root)
        self.stats.update(lost=0, overruns=0, unreadable=0)
        self._sock = None
        self._audit = None
        self._audit_counted = {"lost": 0, "overruns": 0}
        self._epoll = None
        self._buffer = bytearray(65536)
        self._last_seq = {}        # cpu -> last connector sequence number seen
        self._parents = {}         # pid -> ppid from fork events, for processes gone too early
        self._known = {}           # polling: pid -> start time
        self._pending = {}         # polling: pid -> (start time, event) seen in the last scan

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self):
        """Audit, else Netlink, else Polling (as far as `mode` allows); `self.source` says
        what is in use and why, and each fallback is logged with its reason."""
        if self.requested_mode in ("Auto", "Audit"):
            try:
                self._open_audit()
                return
            except OSError as exc:
                if self.requested_mode == "Audit":
                    raise
                log.warning("process collector: audit not available (%s); using the netlink "
                            "process connector, which reads command lines from /proc and "
                            "misses those of short-lived processes", exc.strerror or exc)
        if self.requested_mode in ("Auto", "Netlink"):
            try:
                self._open_netlink()
                self.mode = "Netlink"
                self.source = "process connector, command lines from /proc"
                return
            except OSError as exc:
                if self.requested_mode == "Netlink":
                    raise
                log.warning("process collector: netlink process connector not available (%s); "
                            "falling back to polling /proc every %g s, which misses short-lived "
                            "processes", exc.strerror or exc, self.polling_interval)
        self.mode = "Polling"
        self.source = "/proc scans"
        self.poll_interval = self.polling_interval
        self._known = self._snapshot()

    def _open_audit(self):
        """Execs (with argv) from audit; forks from the process connector when it is there
        (one epoll fd stands for both sockets)."""
        audit = AuditExecSource()
        audit.open()
        forks = "forks from the process connector"
        try:
            self._open_netlink()
        except OSError as exc:
            forks = "no fork events (process connector: %s)" % (exc.strerror or exc)
            log.warning("process collector: %s", forks)
        self._audit = audit
        self._epoll = select.epoll()
        self._epoll.register(audit.fileno(), select.EPOLLIN)
        if self._sock is not None:
            self._epoll.register(self._sock.fileno(), select.EPOLLIN)
        self.mode = "Audit"
        self.source = "audit exec records with argv, %s; %s" % (audit.describe, forks)
        self.poll_interval = AUDIT_CHECK_INTERVAL

    def _open_netlink(self):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.receive_buffer)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
            sock.bind((0, CN_IDX_PROC))
            self._sock = sock
            self._subscribe()
        except OSError:
            sock.close()
            self._sock = None
            raise

    def _subscribe(self):
        """Ask for events and wait for the kernel's answer: binding works for anyone, but
        without CAP_NET_ADMIN the kernel refuses the subscription in an acknowledgement."""
        seq = random.getrandbits(31)
        self._sock.send(self._control(PROC_CN_MCAST_LISTEN, seq))
        self._sock.setblocking(False)
        deadline = time.monotonic() + ACK_TIMEOUT
        while time.monotonic() < deadline:
            select.select([self._sock], [], [], max(0.0, deadline - time.monotonic()))
            try:
                n = self._sock.recv_into(self._buffer)
            except BlockingIOError:
                continue
            what = PROC_EVENT.unpack_from(self._buffer, HEADER_LEN)[0]
            msg_ack = CN_MSG.unpack_from(self._buffer, NLMSGHDR.size)[3]
            if what == PROC_EVENT_NONE and msg_ack == seq + 1:       # our acknowledgement
                err = struct.unpack_from("=I", self._buffer, HEADER_LEN + PROC_EVENT.size)[0]
                if err:
                    raise OSError(err, "process connector: %s" % os.strerror(err))
                return
            self._parse(self._buffer, n, [], [], [])    # events before the answer: too early
        raise OSError(errno.ETIMEDOUT, "process connector: no answer to the subscription")

    @staticmethod
    def _control(op, seq=0):
        payload = struct.pack("=I", op)
        cn = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, seq, seq, len(payload), 0)
        return NLMSGHDR.pack(HEADER_LEN + len(payload), NLMSG_DONE, 0, 0, os.getpid()) + cn + payload

    def close(self):
        self._report_pending(None)  # stopping: the processes of the last scan are not lost
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        if self._audit is not None:
            self._audit.close()
            self._audit = None
        if self._sock is not None:
            try:
                self._sock.send(self._control(PROC_CN_MCAST_IGNORE))
            except OSError:
                pass
            self._sock.close()
            self._sock = None

    def fileno(self):
        if self._epoll is not None:
            return self._epoll.fileno()
        return self._sock.fileno() if self._sock is not None else None

    # -- netlink -----------------------------------------------------------------------------
    def read(self):
        """Drain the connector socket; returns the number of events emitted.

        The connector's events carry no command line: it must be read from /proc before the
        process ends. So the pending messages are taken off the socket first, exec events are
        described next (their processes may be about to exit), then forks (described from the
        parent, which lives on), and the batch is emitted in time order."""
        if self._sock is None and self._audit is None:
            return 0
        execs, forks, exits = [], [], []
        buf = self._buffer
        if self._sock is not None:
            # An overrun's lost count comes from the sequence gap.
            for n in nlsocket.datagrams(self._sock, buf, self.stats):
                self._parse(buf, n, execs, forks, exits)
        if self._audit is not None:               # execs come from audit, with their argv
            events = [self._exec_event(e) for e in self._audit.read()]
            for key in ("lost", "overruns"):
                self.stats[key] += self._audit.stats[key] - self._audit_counted[key]
                self._audit_counted[key] = self._audit.stats[key]
        else:
            events = [self._describe(pid, "exec", stamp, pid) for pid, stamp in execs]
        events += [self._describe(parent, "fork", stamp, child) for child, parent, stamp in forks]
        for pid in exits:
            self._parents.pop(pid, None)
        events.sort(key=lambda e: e["t"])
        for event in events:
            self._emit(event)
        return len(events)

    def _parse(self, buf, n, execs, forks, exits):
        if n < HEADER_LEN + PROC_EVENT.size:
            return
        seq = CN_MSG.unpack_from(buf, NLMSGHDR.size)[2]
        what, cpu, stamp = PROC_EVENT.unpack_from(buf, HEADER_LEN)
        last = self._last_seq.get(cpu)
        if last is not None and seq > last + 1:
            self.stats["lost"] += seq - last - 1
        self._last_seq[cpu] = seq
        data = HEADER_LEN + PROC_EVENT.size
        if what == PROC_EVENT_FORK:
            _parent_pid, parent_tgid, child_pid, child_tgid = FORK_DATA.unpack_from(buf, data)
            if child_pid == child_tgid:                 # a new process, not a new thread
                if len(self._parents) >= MAX_TRACKED_PARENTS:
                    self._parents.clear()               # exits were lost: do not grow forever
                self._parents[child_tgid] = parent_tgid
                forks.append((child_tgid, parent_tgid, stamp))
        elif what == PROC_EVENT_EXEC:
            _pid, tgid = EXEC_DATA.unpack_from(buf, data)
            execs.append((tgid, stamp))
        elif what == PROC_EVENT_EXIT:
            pid, tgid = EXIT_DATA.unpack_from(buf, data)
            if pid == tgid:
                exits.append(tgid)

    def _exec_event(self, record):
        """A process event from an audit exec record: all of it comes from the kernel, nothing
        from /proc, so it is exact however short the process lived."""
        commandline = b" ".join(record.argv).decode("utf-8", "replace")
        return {"kind": "process", "t": record.t, "type": "exec", "pid": record.pid,
                "ppid": record.ppid, "uid": record.uid,
                "commandline": redact_secrets(commandline), "executable": record.executable,
                "user_name": self.reader.users.name(record.uid)}

    def _describe(self, source, kind, stamp_ns, pid):
        """The event for process `pid`, read from /proc/<source>. A forked child is a copy of
        its parent: it is described from the parent (source), which is still there, rather than
        from the child, which may be half-way through an exec already."""
        t = wall_clock(stamp_ns)
        event = self.reader.event(source, kind, t, self._parents.get(source, 0))
        if event is None:
            self.stats["unreadable"] += 1
            return unreadable_event(pid, kind, t, self._parents.get(pid, 0))
        if pid != source:
            event["pid"], event["ppid"] = pid, source
        return event

    # -- polling -----------------------------------------------------------------------------
    def _snapshot(self):
        known = {}
        for pid in list_pids(self.root):
            try:
                known[pid] = start_time(self.root, pid)
            except (OSError, ValueError, IndexError):
                pass
        return known

    def poll(self):
        """Audit mode: our audit rule is still there (else added again). Polling mode: report
        the processes that appeared since the scan before last.

        A new process is reported one scan after it was first seen: a child caught between
        fork and exec still shows its parent's command line (from a parent with a large heap
        the gap is milliseconds, so scans often land in it), and by the next scan it shows its
        own. One that is gone by then is reported as it was first read."""
        if self._audit is not None:
            restored = self._audit.stats["rules_restored"]
            self._audit.check()
            if self._audit.stats["rules_restored"] != restored:
                log.warning("process collector: our audit rule had been removed (auditd "
                            "reloading its rules?); added it again")
            return 0
        if self.mode != "Polling":
            return 0
        now = time.time()
        current = self._snapshot()
        emitted = self._report_pending(current)
        for pid, started in current.items():
            if self._known.get(pid) == started:
                continue
            event = self.reader.event(pid, "exec", now)
            if event is not None:
                self._pending[pid] = (started, event)
        self._known = current
        return emitted

    def _report_pending(self, current):
        # CURRENT: pid -> start time now (None: report what was first read).
        emitted = 0
        for pid, (started, first) in self._pending.items():
            event = None
            if current is not None and current.get(pid) == started:
                event = self.reader.event(pid, "exec", first["t"])
            self._emit(event or first)
            emitted += 1
        self._pending = {}
        return emitted

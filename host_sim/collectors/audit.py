"""Exec records with their argv from the kernel's audit subsystem (NETLINK_AUDIT).

    source = AuditExecSource(); source.open()     # OSError (with the reason) when unusable
    source.fileno(); source.read() -> [Exec, ...]; source.check(); source.close()

Why audit and not the process connector or eBPF: the kernel writes the argv of an execve into
its EXECVE record while the process is still inside the system call, so the command line of a
process that lives a microsecond is there; the connector only gives a pid, and /proc/PID/cmdline
is often gone by the time it is read. eBPF could do the same, but needs a BPF program compiled
for the kernel (clang, libbpf or bcc, BTF) and CAP_BPF + CAP_PERFMON; audit is plain netlink,
parsed with the standard library, and present on every Debian kernel (CONFIG_AUDIT=y).

How it coexists with auditd: the agent does not become the audit daemon (one pid may, and that
is auditd's place). It reads the read-only multicast group AUDIT_NLGRP_READLOG (Linux 3.16,
CAP_AUDIT_READ), which gets every record whether or not auditd runs, and adds one rule of its own
at the end of the exit list (CAP_AUDIT_CONTROL): `exit,always arch=<arch> -S execve,execveat
success=1 key=microagent-<pid>-<n>`, one per ABI of the machine. It reads every successful
execve record, whichever rule produced it, so an auditd rule that already logs execve (matched
first) is fine. With auditd running, auditd also logs what our rule produces (every exec goes to
audit.log). A rule removed behind our back (auditd's `auditctl -D` on a reload) is added again
by check(). Rules left by an agent that died (its pid is gone) are removed at open().

Auditing must be enabled: when it is off (no auditd, no `audit=1` on the kernel command line)
open() enables it and leaves it on at close (auditd or another agent may rely on it by then).
Tasks forked before auditing was first enabled carry no audit context: an exec they do without
forking is not recorded (their children's are). `audit=1` at boot covers those too.

open() proves the path with a test exec (/bin/true) and fails when its record does not come
within PROBE_TIMEOUT: a `never` rule of auditd's, or audit configuration locked (`-e 2`)
without an execve rule, say no that way.

Exec = (t, pid, ppid, uid, executable, argv): t in epoch seconds (the record's time stamp, ms),
argv a list of bytes. stats: "overruns" (ENOBUFS on our socket), "lost" (gaps in the audit
serial numbers: records dropped by the kernel's backlog or our buffer; counts any audit event,
so an upper bound for execs).
"""
import collections
import errno
import itertools
import os
import platform
import random
import re
import select
import shutil
import socket
import struct
import subprocess
import time

from host_sim.collectors import nlsocket

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1
AUDIT_GET, AUDIT_SET = 1000, 1001
AUDIT_LIST_RULES, AUDIT_ADD_RULE, AUDIT_DEL_RULE = 1013, 1011, 1012
AUDIT_SYSCALL, AUDIT_EXECVE, AUDIT_EOE = 1300, 1309, 1320
AUDIT_STATUS_ENABLED = 0x1
AUDIT_FILTER_EXIT, AUDIT_ALWAYS, AUDIT_EQUAL = 0x04, 2, 0x40000000
AUDIT_ARCH_FIELD, AUDIT_SUCCESS_FIELD, AUDIT_FILTERKEY_FIELD = 11, 104, 210
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300

NLMSGHDR = struct.Struct("=IHHII")
STATUS = struct.Struct("=11I")        # mask enabled failure pid rate_limit backlog_limit lost ...
RULE_HEAD = struct.Struct("=3I")      # flags action field_count
RULE_ARRAYS = struct.Struct("=256I")  # mask[64] fields[64] values[64] fieldflags[64]
RULE_SIZE = RULE_HEAD.size + RULE_ARRAYS.size + 4

# (audit arch, execve, execveat) for each ABI a machine runs, native first.
ARCH_X86_64, ARCH_I386 = 0xC000003E, 0x40000003
ARCH_AARCH64, ARCH_ARM, ARCH_RISCV64 = 0xC00000B7, 0x40000028, 0xC00000F3
EXEC_SYSCALLS = {ARCH_X86_64: (59, 322), ARCH_I386: (11, 358), ARCH_AARCH64: (221, 281),
                 ARCH_ARM: (11, 387), ARCH_RISCV64: (221, 281)}
MACHINE_ARCHES = {"x86_64": (ARCH_X86_64, ARCH_I386), "aarch64": (ARCH_AARCH64, ARCH_ARM),
                  "riscv64": (ARCH_RISCV64,), "i686": (ARCH_I386,), "i386": (ARCH_I386,),
                  "armv7l": (ARCH_ARM,), "armv6l": (ARCH_ARM,)}

KEY_PREFIX = "microagent-"
RECEIVE_BUFFER = 32 * 1024 * 1024
SO_RCVBUFFORCE = 33
REPLY_TIMEOUT = 2.0
PROBE_TIMEOUT = 2.0
MAX_PENDING = 4096          # execs waiting for their end-of-event record
MAX_ARGV_BYTES = 65536      # the engine cuts command lines at 2,048 bytes anyway

STAMP = re.compile(rb"audit\((\d+)\.(\d+):(\d+)\): ")
SYSCALL_FIELDS = re.compile(rb" arch=([0-9a-f]+) syscall=(\d+) success=yes .*? ppid=(\d+) "
                            rb"pid=(\d+) auid=\d+ uid=(\d+) .*? "
                            rb"exe=(\"[^\"]*\"|[0-9A-F]+|\(null\))")
ARG = re.compile(rb"a(\d+)(?:\[\d+\])?=(\"[^\"]*\"|[0-9A-F]*|\(null\))")

Exec = collections.namedtuple("Exec", "t pid ppid uid executable argv")


def unquote(value):
    """An audit string field: "text" as is, otherwise hex (the kernel's encoding of values with
    spaces, quotes or control characters)."""
    if value[:1] == b'"':
        return value[1:-1]
    if value == b"(null)":
        return b""
    try:
        return bytes.fromhex(value.decode())
    except ValueError:
        return b""


def machine_arches():
    arches = MACHINE_ARCHES.get(platform.machine())
    if arches is None:
        raise OSError(errno.ENOTSUP, "audit: no execve syscall numbers for %s"
                      % platform.machine())
    return arches


def exec_rule(arch, key):
    """audit_rule_data: exit,always arch=ARCH -S execve,execveat success=1 key=KEY."""
    key = key.encode()
    mask, fields, values, flags = [0] * 64, [0] * 64, [0] * 64, [0] * 64
    for nr in EXEC_SYSCALLS[arch]:
        mask[nr // 32] |= 1 << (nr % 32)
    for i, (field, value) in enumerate(((AUDIT_ARCH_FIELD, arch), (AUDIT_SUCCESS_FIELD, 1),
                                        (AUDIT_FILTERKEY_FIELD, len(key)))):
        fields[i], values[i], flags[i] = field, value, AUDIT_EQUAL
    return (RULE_HEAD.pack(AUDIT_FILTER_EXIT, AUDIT_ALWAYS, 3)
            + RULE_ARRAYS.pack(*(mask + fields + values + flags)) + struct.pack("=I", len(key))
            + key)


def rule_key(data):
    """The key of a listed rule of ours (fields arch, success, key and nothing else), or None."""
    if len(data) < RULE_SIZE:
        return None
    _flags, _action, count = RULE_HEAD.unpack_from(data)
    arrays = RULE_ARRAYS.unpack_from(data, RULE_HEAD.size)
    if count != 3 or arrays[64:67] != (AUDIT_ARCH_FIELD, AUDIT_SUCCESS_FIELD,
                                       AUDIT_FILTERKEY_FIELD):
        return None
    key = data[RULE_SIZE:RULE_SIZE + arrays[128 + 2]].decode("ascii", "replace")
    return key if key.startswith(KEY_PREFIX) else None


class AuditControl:
    """Requests to the kernel's audit configuration (CAP_AUDIT_CONTROL)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        self.sock.bind((0, 0))
        self._seq = random.getrandbits(24)

    def close(self):
        self.sock.close()

    def request(self, kind, payload=b"", flags=NLM_F_REQUEST | NLM_F_ACK, reply=None):
        """Send one request; returns the payloads of the replies of type REPLY (the kernel
        sends those from a thread of its own, so they may come before or after the ack)."""
        self._seq += 1
        self.sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(payload), kind, flags, self._seq, 0)
                       + payload)
        replies, acked, done = [], not flags & NLM_F_ACK, reply is None
        deadline = time.monotonic() + REPLY_TIMEOUT
        while not (acked and done):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                raise OSError(errno.ETIMEDOUT, "audit: no answer from the kernel")
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, msg_type, _flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
                body = data[offset + NLMSGHDR.size:offset + max(length, NLMSGHDR.size)]
                offset += max((length + 3) & ~3, NLMSGHDR.size)
                if seq != self._seq:
                    continue
                if msg_type == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", body)[0]
                    if err:
                        raise OSError(err, os.strerror(err))
                    acked = True
                elif msg_type == NLMSG_DONE:
                    done = acked = True
                elif msg_type == reply:
                    replies.append(body)
                    if not flags & NLM_F_DUMP:
                        done = True
        return replies

    def status(self):
        """(enabled, pid of the audit daemon, lost) — enabled 2 means locked."""
        fields = STATUS.unpack(self.request(AUDIT_GET, reply=AUDIT_GET)[0][:STATUS.size]
                               .ljust(STATUS.size, b"\0"))
        return fields[1], fields[3], fields[6]

    def enable(self):
        self.request(AUDIT_SET, STATUS.pack(AUDIT_STATUS_ENABLED, 1, *[0] * 9))

    def rules(self):
        return self.request(AUDIT_LIST_RULES, flags=NLM_F_REQUEST | NLM_F_DUMP,
                            reply=AUDIT_LIST_RULES)

    def add_rule(self, rule):
        """True when added, False when the same rule is there already."""
        try:
            self.request(AUDIT_ADD_RULE, rule)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def delete_rule(self, rule):
        try:
            self.request(AUDIT_DEL_RULE, rule)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise


def alive(pid):
    return os.path.exists("/proc/%d" % pid)


class AuditExecSource:
    _instances = itertools.count(1)

    def __init__(self, receive_buffer=RECEIVE_BUFFER):
        self.receive_buffer = receive_buffer
        # one rule per source: another source's close() must not remove the rule we rely on
        self.key = "%s%d-%d" % (KEY_PREFIX, os.getpid(), next(self._instances))
        self.stats = {"overruns": 0, "lost": 0, "rules_restored": 0}
        self.describe = ""         # how it runs, for the log line: auditd or not, enabled by us
        self._control = None
        self._sock = None
        self._rules = []
        self._buffer = bytearray(1 << 16)
        self._pending = {}         # serial -> [t, syscall match, argv parts]
        self._highest = None       # highest audit serial seen
        self._missing = set()      # serials skipped over, not yet seen (late or lost)
        self._ignore_pid = None

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self):
        try:
            self._open()
        except OSError:
            self.close()
            raise

    def _open(self):
        arches = machine_arches()
        try:
            self._control = AuditControl()
        except OSError as exc:
            raise _reason(exc, "cannot open a NETLINK_AUDIT socket")
        try:
            enabled, daemon, _lost = self._control.status()
        except OSError as exc:
            raise _reason(exc, "cannot read the audit status (needs CAP_AUDIT_CONTROL)")
        notes = ["auditd (pid %d) running" % daemon if daemon else "no audit daemon"]
        if enabled == 0:
            self._control.enable()
            notes.append("auditing enabled by the agent")
        self._remove_stale_rules()
        for i, arch in enumerate(arches):
            rule = exec_rule(arch, self.key)
            try:
                self._control.add_rule(rule)
                self._rules.append(rule)
            except OSError as exc:
                if i == 0 and not (exc.errno == errno.EPERM and enabled == 2):
                    raise _reason(exc, "cannot add the execve rule")
                if i == 0:
                    notes.append("audit rules locked (-e 2): relying on the existing rules")
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.receive_buffer)
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)
        try:
            self._sock.bind((0, 1 << (AUDIT_NLGRP_READLOG - 1)))
        except OSError as exc:
            raise _reason(exc, "cannot join the audit read-only multicast group "
                               "(needs CAP_AUDIT_READ)")
        self._sock.setblocking(False)
        self._probe()
        self.describe = ", ".join(notes)

    def _remove_stale_rules(self):
        """Rules of agents that died without removing theirs (the pid in the key is gone)."""
        for data in self._control.rules():
            key = rule_key(data)
            owner = key[len(KEY_PREFIX):].split("-")[0] if key else ""
            if owner.isdigit() and not alive(int(owner)):
                self._control.delete_rule(data[:RULE_SIZE + len(key)])

    def _probe(self):
        """Run a test exec and wait for its record: proof that execs reach us."""
        true = shutil.which("true") or "/bin/true"
        child = subprocess.Popen([true, "microagent-audit-probe"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        child.wait()
        self._ignore_pid = child.pid
        deadline = time.monotonic() + PROBE_TIMEOUT
        while time.monotonic() < deadline:
            select.select([self._sock], [], [], max(0.0, deadline - time.monotonic()))
            if any(e.pid == child.pid for e in self._drain(keep_probe=True)):
                return
        raise OSError(errno.ETIMEDOUT, "audit: no record of a test exec within %g s (a 'never' "
                                       "rule, or locked rules without execve?)" % PROBE_TIMEOUT)

    def check(self):
        """Periodic: our rule is still there (auditd's reload deletes all rules)."""
        if self._control is None:
            return
        for rule in self._rules:
            if self._control.add_rule(rule):
                self.stats["rules_restored"] += 1

    def close(self):
        if self._control is not None:
            for rule in self._rules:
                try:
                    self._control.delete_rule(rule)
                except OSError:
                    pass
            self._control.close()
            self._control = None
        self._rules = []
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def fileno(self):
        return self._sock.fileno() if self._sock is not None else None

    # -- records -----------------------------------------------------------------------------
    def read(self):
        """The execs whose records are complete, in the order they ended."""
        return self._drain() if self._sock is not None else []

    def _drain(self, keep_probe=False):
        done = []
        buf = self._buffer
        for n in nlsocket.datagrams(self._sock, buf, self.stats):
            if n > NLMSGHDR.size:
                self._record(struct.unpack_from("=H", buf, 4)[0], bytes(buf[NLMSGHDR.size:n]),
                             done)
        if not keep_probe and self._ignore_pid is not None:
            done = [e for e in done if e.pid != self._ignore_pid]
        return done

    def _record(self, kind, text, done):
        stamp = STAMP.match(text)
        if stamp is None:
            return
        serial = int(stamp.group(3))
        self._count_serial(serial)
        if kind == AUDIT_SYSCALL:
            fields = SYSCALL_FIELDS.search(text, stamp.end() - 1)
            if fields is None or int(fields.group(2)) not in \
                    EXEC_SYSCALLS.get(int(fields.group(1), 16), ()):
                return
            if len(self._pending) >= MAX_PENDING:      # end records lost: do not grow forever
                oldest = next(iter(self._pending))
                done.append(self._finish(self._pending.pop(oldest)))
            t = int(stamp.group(1)) + int(stamp.group(2)) / 1000.0
            self._pending[serial] = [t, fields, [], 0]
        elif kind == AUDIT_EXECVE:
            entry = self._pending.get(serial)
            if entry is not None:
                self._arguments(entry, text, stamp.end())
        elif kind == AUDIT_EOE:
            entry = self._pending.pop(serial, None)
            if entry is not None:
                done.append(self._finish(entry))

    @staticmethod
    def _arguments(entry, text, start):
        """EXECVE record(s): a0="..." a1=HEX ..., a long argument as aN_len=... aN[0]=HEX
        aN[1]=... (and spread over several records)."""
        parts = entry[2]
        for match in ARG.finditer(text, start):
            index = int(match.group(1))
            value = unquote(match.group(2))
            if entry[3] >= MAX_ARGV_BYTES:
                return
            entry[3] += len(value)
            if index < len(parts):
                parts[index] += value
            else:
                parts.extend([b""] * (index - len(parts)))
                parts.append(value)

    @staticmethod
    def _finish(entry):
        t, fields, argv, _size = entry
        return Exec(t, int(fields.group(4)), int(fields.group(3)), int(fields.group(5)),
                    unquote(fields.group(6)).decode("utf-8", "replace"), argv)

    def _count_serial(self, serial):
        """Gaps in the serial numbers: a record may come late (another CPU), so a skipped
        serial is counted lost and uncounted if it shows up."""
        highest = self._highest
        if highest is None or serial == highest:
            self._highest = serial
        elif serial > highest:
            if serial - highest - 1 and len(self._missing) < 100000:
                self._missing.update(range(highest + 1, serial))
            self.stats["lost"] += serial - highest - 1
            self._highest = serial
        elif serial in self._missing:
            self._missing.discard(serial)
            self.stats["lost"] -= 1


def _reason(exc, what):
    """OSError with a message that says what failed and why, for the fallback log line."""
    why = {errno.EPERM: "not permitted", errno.EACCES: "not permitted",
           errno.ECONNREFUSED: "refused outside the initial user namespace (a container?)",
           errno.EPROTONOSUPPORT: "kernel without audit (CONFIG_AUDIT) or booted with audit=0"}
    return OSError(exc.errno, "%s: %s" % (what, why.get(exc.errno, exc.strerror or exc)))

"""The audit exec source (host_sim/collectors/audit.py) and the process collector's Audit mode.

Record parsing is fed netlink datagrams written here by hand, in the kernel's format (taken from
this machine's kernel: SYSCALL, EXECVE, ..., EOE records sharing a serial); the live tests need
root (or CAP_AUDIT_CONTROL + CAP_AUDIT_READ) and check against the argv they exec'd."""
import glob
import os
import socket
import struct
import subprocess
import sys
import time
import uuid

import throwaway_root
from polling import wait_for
from host_sim.collectors import audit
from host_sim.collectors.audit import AuditControl, AuditExecSource, Exec, exec_rule, rule_key
from host_sim.collectors.process import ProcessCollector

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



def datagram(kind, text):
    body = text.encode() if isinstance(text, str) else text
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def syscall(serial, syscall_nr=59, arch="c000003e", success="yes", pid=4242, ppid=4000, uid=1000,
            exe='"/usr/bin/true"'):
    return datagram(1300, 'audit(1796050000.123:%d): arch=%s syscall=%d success=%s exit=0 '
                          'a0=55d0 a1=55d1 a2=7ffc a3=8 items=2 ppid=%d pid=%d auid=1000 uid=%d '
                          'gid=1000 euid=%d suid=%d fsuid=%d egid=1000 sgid=1000 fsgid=1000 '
                          'tty=pts0 ses=3 comm="true" exe=%s key="microagent-1"'
                    % (serial, arch, syscall_nr, success, ppid, pid, uid, uid, uid, uid, exe))


def execve(serial, args):
    return datagram(1309, "audit(1796050000.123:%d): %s" % (serial, args))


def eoe(serial):
    return datagram(1320, "audit(1796050000.123:%d): " % serial)


def other(serial, kind=1307, text='cwd="/tmp"'):
    return datagram(kind, "audit(1796050000.123:%d): %s" % (serial, text))


def feed(datagrams):
    """An AuditExecSource reading DATAGRAMS from a socket pair instead of the kernel."""
    source = AuditExecSource()
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    source._sock = ours
    for d in datagrams:
        theirs.send(d)
    try:
        return source, source.read()
    finally:
        ours.close()
        theirs.close()


def test_quoted_and_hex_arguments_become_the_argv():
    _, execs = feed([syscall(10), other(10, 1321, "fver=0 fp=0"),
                     execve(10, 'argc=4 a0="/bin/echo" a1=68656C6C6F20776F726C64 a2=782279 '
                                'a3=C3A9'),
                     other(10), other(10, 1302, 'item=0 name="/bin/echo" inode=1'),
                     other(10, 1327, "proctitle=2F62696E2F6563686F"), eoe(10)])
    assert execs == [Exec(1796050000.123, 4242, 4000, 1000, "/usr/bin/true",
                          [b"/bin/echo", b"hello world", b'x"y', "é".encode()])]


def test_a_long_argument_split_over_records_is_joined():
    first = "41" * 3000
    second = "42" * 2000
    _, execs = feed([syscall(11),
                     execve(11, 'argc=3 a0="/bin/true" a1_len=5000 a1[0]=%s' % first),
                     execve(11, 'a1[1]=%s a2="end"' % second), eoe(11)])
    assert execs[0].argv == [b"/bin/true", b"A" * 3000 + b"B" * 2000, b"end"]


def test_hex_executable_and_null_executable():
    _, execs = feed([syscall(12, exe="2F746D702F6D7920746F6F6C"), execve(12, 'argc=1 a0="x"'),
                     eoe(12), syscall(13, exe="(null)"), execve(13, 'argc=1 a0="y"'), eoe(13)])
    assert [e.executable for e in execs] == ["/tmp/my tool", ""]


def test_only_successful_execs_of_the_right_abi_count():
    _, execs = feed([
        syscall(20, syscall_nr=2), eoe(20),                       # open(), from auditd's rules
        syscall(21, success="no"), execve(21, 'argc=1 a0="/nope"'), eoe(21),
        syscall(22, syscall_nr=11), execve(22, 'argc=1 a0="/x"'), eoe(22),   # x86_64 11: munmap
        syscall(23, syscall_nr=11, arch="40000003", pid=7), execve(23, 'argc=1 a0="/i386"'),
        eoe(23),                                                   # i386 11: execve
        syscall(24, syscall_nr=322, pid=8), execve(24, 'argc=1 a0="/at"'), eoe(24)])
    assert [(e.pid, e.argv) for e in execs] == [(7, [b"/i386"]), (8, [b"/at"])]


def test_interleaved_events_complete_at_their_end_record():
    _, execs = feed([syscall(30, pid=1), syscall(31, pid=2), execve(31, 'argc=1 a0="/two"'),
                     execve(30, 'argc=1 a0="/one"'), eoe(31), eoe(30)])
    assert [(e.pid, e.argv) for e in execs] == [(2, [b"/two"]), (1, [b"/one"])]


def test_gaps_in_serial_numbers_count_as_lost_unless_they_come_late():
    source, _ = feed([other(100), other(104), other(102), other(105)])
    assert source.stats["lost"] == 2                 # 101 and 103; 102 came late


def test_rule_round_trip_and_foreign_rules():
    rule = exec_rule(audit.ARCH_X86_64, "microagent-77")
    assert rule_key(rule) == "microagent-77"
    assert rule_key(exec_rule(audit.ARCH_X86_64, "exec")) is None          # not ours
    assert rule_key(rule[:100]) is None
    mask = struct.unpack_from("=64I", rule, 12)
    assert mask[59 // 32] & (1 << (59 % 32)) and mask[322 // 32] & (1 << (322 % 32))
    assert sum(bin(m).count("1") for m in mask) == 2


# -- live ---------------------------------------------------------------------------------------
def our_rules():
    control = AuditControl()
    try:
        return [rule_key(r) for r in control.rules() if rule_key(r)]
    finally:
        control.close()


def test_audit_mode_gives_every_exec_its_exact_argv(events):
    assert os.geteuid() == 0, "audit needs root (CAP_AUDIT_CONTROL, CAP_AUDIT_READ)"
    marker = "audit-test-" + uuid.uuid4().hex
    collector = ProcessCollector(events.append, mode="Audit")
    collector.start()
    try:
        assert collector.mode == "Audit"
        assert collector._audit.key in our_rules()
        long_argument = "L" * 10000
        argvs = [["/bin/true", marker, str(i), "with space", "caf\u00e9"] for i in range(200)]
        argvs.append(["/bin/true", marker, long_argument])
        for argv in argvs:
            subprocess.run(argv, check=True)
        # The kernel hands audit records to its kauditd thread, which sends them on: wait for
        # them (a busy machine may take a while) rather than for a fixed time.
        wait_for(lambda: sum(1 for e in list(events) if e["type"] == "exec"
                             and marker in e["commandline"]) >= len(argvs), 30)
    finally:
        collector.stop()
    execs = [e for e in events if e["type"] == "exec" and marker in e["commandline"]]
    assert sorted(e["commandline"] for e in execs) == sorted(" ".join(a) for a in argvs)
    assert {(e["uid"], e["user_name"], e["ppid"], e["executable"]) for e in execs} == \
        {(0, "root", os.getpid(), os.path.realpath("/bin/true"))}
    assert all(abs(e["t"] - time.time()) < 30 for e in execs)
    assert not any("microagent-audit-probe" in e["commandline"] for e in events)
    forks = [e for e in events if e["type"] == "fork" and e["ppid"] == os.getpid()]
    assert {e["pid"] for e in execs} <= {e["pid"] for e in forks}       # from the connector
    assert collector.stats["lost"] == 0
    assert collector._audit is None and collector.stats["events"] == len(events)


def test_a_removed_rule_is_added_again_and_our_rules_go_at_close(events):
    assert os.geteuid() == 0, "audit needs root (CAP_AUDIT_CONTROL, CAP_AUDIT_READ)"
    collector = ProcessCollector(events.append, mode="Audit")
    collector.open()
    try:
        key = collector._audit.key
        control = AuditControl()
        for rule in collector._audit._rules:             # what auditd's `auditctl -D` does
            control.delete_rule(rule)
        control.close()
        assert key not in our_rules()
        collector.poll()
        assert collector._audit.stats["rules_restored"] == len(collector._audit._rules)
        assert key in our_rules()
        marker = "audit-restored-" + uuid.uuid4().hex
        subprocess.run(["/bin/true", marker], check=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(marker in e["commandline"] for e in events):
            collector.read()
            time.sleep(0.02)
    finally:
        collector.close()
    assert any(e["commandline"] == "/bin/true " + marker for e in events)
    assert key not in our_rules()


def test_the_rule_of_an_agent_that_died_is_removed_at_open():
    assert os.geteuid() == 0, "audit needs root (CAP_AUDIT_CONTROL, CAP_AUDIT_READ)"
    child = subprocess.Popen(["/bin/true"])
    child.wait()
    stale = "microagent-%d-1" % child.pid                       # its pid is gone now
    control = AuditControl()
    control.add_rule(exec_rule(audit.machine_arches()[0], stale))
    control.close()
    assert stale in our_rules()
    source = AuditExecSource()
    source.open()
    try:
        assert stale not in our_rules() and source.key in our_rules()
    finally:
        source.close()


# Run as root until everything is imported, then as nobody without capabilities: the checkout
# may sit where nobody cannot read (a CI clone in a private temporary folder).
FALLBACK = """
import logging, os
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from host_sim.collectors.process import ProcessCollector
os.setgroups([]); os.setgid(65534); os.setuid(65534)
try:
    ProcessCollector(print, mode="Audit").open()
except OSError as exc:
    print("AUDIT REFUSED:", exc)
c = ProcessCollector(print, mode="Auto")
c.open(); c.close()
print("MODE", c.mode)
try:
    ProcessCollector(print, mode="Netlink").open()
    print("NETLINK OPENS")
except OSError as exc:
    print("NETLINK REFUSED:", exc)
"""


def test_without_the_audit_capabilities_auto_says_why_and_falls_back():
    """As nobody without capabilities audit refuses; whether the process connector is open to
    an unprivileged process depends on the kernel (Linux 6.6 opened it, 6.18 refuses it), so
    Auto must use it exactly when the connector opens for nobody, and poll otherwise, saying
    why each time."""
    assert os.geteuid() == 0, "needs root to start a process as nobody"
    result = subprocess.run([sys.executable, "-c", FALLBACK], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "AUDIT REFUSED: " in result.stdout and "needs CAP_AUDIT_CONTROL" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert warnings[0].startswith("WARNING process collector: audit not available (")
    assert "needs CAP_AUDIT_CONTROL" in warnings[0]
    if "NETLINK OPENS" in result.stdout:
        assert "MODE Netlink" in result.stdout and len(warnings) == 1
    else:
        assert "NETLINK REFUSED: " in result.stdout and "MODE Polling" in result.stdout
        assert len(warnings) == 2
        assert warnings[1].startswith("WARNING process collector: netlink process connector "
                                      "not available (")
        assert "falling back to polling /proc" in warnings[1]


# -- with a running auditd ----------------------------------------------------------------------
# auditd, installed (with dpkg, from the packages `make setup` downloads) into a throw-away overlay of this
# system in a private mount namespace -- this machine is shared, nothing is installed on it --
# and started there (`auditd -n`) with Debian's default rules loaded by augenrules (which begin
# with -D: delete all rules). It is this kernel's real audit daemon while the test runs.
AUDITD = r"""
DEBS=$1
mkdir -p "$R/debs" && cp "$DEBS"/*.deb "$R/debs/"
printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d" && chmod 755 "$R/usr/sbin/policy-rc.d"
chroot "$R" sh -c 'dpkg -i /debs/*.deb' >/dev/null
chroot "$R" auditd -n &
AUDITD_PID=$!
echo "READY $AUDITD_PID"
while read -r command argument; do
    case $command in
        reload) chroot "$R" augenrules --load >/dev/null 2>&1; echo "DONE";;
        count) echo "COUNT $(grep -c "$argument" "$R/var/log/audit/audit.log" || true)";;
        stop) kill "$AUDITD_PID"; wait "$AUDITD_PID" || true; echo "STOPPED"; exit 0;;
    esac
done
kill "$AUDITD_PID"
"""


class Auditd:
    def __init__(self, tmp_path):
        debs = os.path.join(REPO, "build", "debs")
        assert glob.glob(os.path.join(debs, "auditd_*.deb")), \
            "auditd's packages are missing from %s: run `make setup`" % debs
        (tmp_path / "root").mkdir()
        self.proc = subprocess.Popen(throwaway_root.command(AUDITD, tmp_path / "root", debs),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.proc.stdout.readline().split()
        assert ready and ready[0] == "READY", "auditd did not start"
        self.pid = int(ready[1])

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def stop(self):
        if self.proc.poll() is None:
            self.ask("stop")
            self.proc.wait(60)


def audit_daemon_pid():
    control = AuditControl()
    try:
        return control.status()[1]
    finally:
        control.close()


def test_coexists_with_a_running_auditd(tmp_path, events):
    assert os.geteuid() == 0, "needs root: runs auditd (in a throw-away overlay) and audit"
    assert audit_daemon_pid() == 0, "another audit daemon is running on this machine"
    auditd = Auditd(tmp_path)
    collector = None
    try:
        assert wait_for(lambda: audit_daemon_pid() != 0), "auditd never registered"
        daemon = audit_daemon_pid()
        assert auditd.ask("reload") == "DONE"            # Debian's rules: -D -b 8192 ...
        collector = ProcessCollector(events.append, mode="Audit")
        collector.start()
        assert "auditd (pid %d) running" % daemon in collector.source
        marker = "with-auditd-" + uuid.uuid4().hex

        def seen(text):
            return sum(1 for e in list(events) if e["commandline"] == "/bin/true " + text)
        for _ in range(20):
            subprocess.run(["/bin/true", marker], check=True)
        assert wait_for(lambda: seen(marker) == 20), seen(marker)
        # auditd got the same records (it is still the audit daemon; we only read the multicast)
        assert wait_for(lambda: int(auditd.ask("count " + marker).split()[1]) >= 20)
        assert audit_daemon_pid() == daemon
        # auditd reloads its rules (-D deletes ours): the collector adds it again
        assert auditd.ask("reload") == "DONE"
        assert wait_for(lambda: collector._audit.stats["rules_restored"] >= 1)
        again = marker + "-after-reload"
        subprocess.run(["/bin/true", again], check=True)
        assert wait_for(lambda: seen(again) == 1)
        collector.stop()
        assert collector.source and not [k for k in our_rules()
                                         if k.startswith("microagent-%d-" % os.getpid())]
        collector = None
        assert audit_daemon_pid() == daemon              # we never took auditd's place
    finally:
        if collector is not None:
            collector.stop()
        auditd.stop()
    assert wait_for(lambda: audit_daemon_pid() == 0), "auditd did not unregister"


def test_two_sources_in_one_process_keep_their_own_rules():
    assert os.geteuid() == 0, "audit needs root (CAP_AUDIT_CONTROL, CAP_AUDIT_READ)"
    first, second = AuditExecSource(), AuditExecSource()
    first.open()
    second.open()
    try:
        first.close()
        assert first.key not in our_rules() and second.key in our_rules()
        marker = "audit-second-" + uuid.uuid4().hex
        subprocess.run(["/bin/true", marker], check=True)
        execs = []
        assert wait_for(lambda: execs.extend(second.read()) or
                        any(marker.encode() in e.argv for e in execs))
    finally:
        second.close()
    assert second.key not in our_rules()

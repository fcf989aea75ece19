import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from collector_fixtures import fixture_path
from host_sim.collectors.process import ProcessCollector, ProcessReader

ROOT = fixture_path("proc_tree")


def test_cmdline_with_nul_bytes_and_invalid_utf8():
    event = ProcessReader(ROOT).event(4100, "exec", 1.5)
    assert event == {"kind": "process", "t": 1.5, "type": "exec", "pid": 4100, "ppid": 1,
                     "uid": 1000, "commandline": "/usr/bin/python3 -c print('caf\ufffd') arg with space",
                     "executable": "/usr/bin/python3.11", "user_name": "alice"}


def test_100_kb_command_line_is_read_whole():
    event = ProcessReader(ROOT).event(4101, "fork", 2.0)
    assert len(event["commandline"]) == len("/bin/sh -c echo ") + 100 * 1024
    assert event["commandline"].endswith("A" * 100)
    assert (event["uid"], event["user_name"], event["ppid"]) == (0, "root", 4100)


def test_kernel_thread_shows_its_name():
    event = ProcessReader(ROOT).event(2, "exec", 0.0)
    assert event["commandline"] == "[kthreadd]"
    assert event["executable"] == ""


def test_process_gone_half_way_keeps_its_command_line():
    """pid 4102 ended between the read of its cmdline and of its status."""
    event = ProcessReader(ROOT).event(4102, "exec", 0.0, ppid_known=4100)
    assert (event["commandline"], event["uid"], event["ppid"], event["user_name"]) == \
        ("/bin/gone", -1, 4100, "")


def test_process_gone_entirely_gives_none():
    assert ProcessReader(ROOT).event(999999, "exec", 0.0) is None


def test_polling_reports_new_and_reused_pids(tree, events):
    root = tree("proc_tree")
    collector = ProcessCollector(events.append, root=root, mode="Polling")
    collector.open()
    assert collector.mode == "Polling" and collector.fileno() is None
    assert collector.poll() == 0                            # what existed at start is not new
    os.rename(os.path.join(root, "proc/4101"), os.path.join(root, "proc/5000"))
    stat = os.path.join(root, "proc/4100/stat")             # pid 4100 reused: new start time
    with open(stat) as f:
        text = f.read()
    with open(stat, "w") as f:
        f.write(text.replace(" 1000 1000000 ", " 2000 1000000 "))
    assert collector.poll() == 0                            # seen: reported at the next scan
    assert collector.poll() == 2
    assert sorted(e["pid"] for e in events) == [4100, 5000]
    assert all(e["type"] == "exec" for e in events)
    assert collector.poll() == 0


def test_polling_reads_a_new_process_again_after_its_exec(tree, events):
    """A scan that lands between fork and exec sees the child with its parent's command line;
    it is reported with the one it has at the next scan, or as first seen if it is gone."""
    root = tree("proc_tree")
    collector = ProcessCollector(events.append, root=root, mode="Polling")
    collector.open()
    shutil.copytree(os.path.join(root, "proc/4100"), os.path.join(root, "proc/6000"))
    shutil.copytree(os.path.join(root, "proc/4100"), os.path.join(root, "proc/6001"))
    parent = ProcessReader(root).event(4100, "exec", 0.0)["commandline"]
    assert collector.poll() == 0                            # both still look like the parent
    with open(os.path.join(root, "proc/6000/cmdline"), "wb") as f:
        f.write(b"/usr/bin/curl\0-s\0http://example.com/x.sh\0")
    shutil.rmtree(os.path.join(root, "proc/6001"))          # gone before the next scan
    assert collector.poll() == 2
    assert {e["pid"]: e["commandline"] for e in events} == {
        6000: "/usr/bin/curl -s http://example.com/x.sh", 6001: parent}
    shutil.copytree(os.path.join(root, "proc/4100"), os.path.join(root, "proc/6002"))
    collector.poll()
    collector.close()                                       # stopping reports the last scan's
    assert events[-1]["pid"] == 6002


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="Process_Mode"):
        ProcessCollector(print, mode="Kprobe")


# -- live, as root, on this machine's kernel --------------------------------------------------
def spawn_marked(count, lifetime="0.3"):
    """Spawns `count` processes with the command line "/bin/sh -c sleep LIFETIME MARKER" (MARKER
    unique) from a shell; returns that command line."""
    marker = "microagent-test-" + uuid.uuid4().hex
    script = 'i=0; while [ $i -lt %d ]; do /bin/sh -c "sleep %s" %s & i=$((i+1)); done; wait' % (
        count, lifetime, marker)
    subprocess.run(["/bin/sh", "-c", script], check=True, timeout=60)
    return "/bin/sh -c sleep %s %s" % (lifetime, marker)


@pytest.mark.requires_root("its processes are to be reported as root's (uid 0)")
def test_netlink_sees_every_exec(events):
    collector = ProcessCollector(events.append, mode="Netlink")
    collector.start()
    try:
        assert collector.mode == "Netlink"
        commandline = spawn_marked(50)
        deadline = time.monotonic() + 10     # the reading thread catches up with the 50 execs
        while time.monotonic() < deadline and sum(
                e["type"] == "exec" and e["commandline"] == commandline for e in events) < 50:
            time.sleep(0.02)
    finally:
        collector.stop()
    execs = [e for e in events if e["type"] == "exec" and e["commandline"] == commandline]
    assert len(execs) == 50
    assert {(e["uid"], e["user_name"]) for e in execs} == {(0, "root")}
    assert {os.path.basename(e["executable"]) for e in execs} <= {"dash", "bash", "sh"}
    assert len({e["pid"] for e in execs}) == 50
    assert all(abs(e["t"] - time.time()) < 30 for e in execs)
    forks = {e["pid"] for e in events if e["type"] == "fork"}
    assert {e["pid"] for e in execs} <= forks                # each was forked first
    assert collector.stats["lost"] == 0


@pytest.mark.requires_root("audit and the process connector (CAP_AUDIT_CONTROL, CAP_AUDIT_READ)")
def test_auto_mode_uses_audit_as_root():
    collector = ProcessCollector(print, mode="Auto")
    collector.open()
    try:
        assert collector.mode == "Audit"
        assert collector.source.startswith("audit exec records with argv")
        assert "forks from the process connector" in collector.source
        assert collector.fileno() is not None and collector.poll_interval == 2.0
    finally:
        collector.close()


def test_polling_sees_a_long_lived_process(events):
    collector = ProcessCollector(events.append, mode="Polling", polling_interval=0.05)
    collector.start()
    try:
        commandline = spawn_marked(3, lifetime="0.5")
    finally:
        collector.stop()
    assert sum(1 for e in events if e["commandline"] == commandline) == 3


FALLBACK_SCRIPT = """
import logging
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from host_sim.collectors.process import ProcessCollector
c = ProcessCollector(print, mode="Auto")
c.open(); c.poll(); c.close()
print("MODE", c.mode)
try:
    ProcessCollector(print, mode="Netlink").open()
except OSError as exc:
    print("NETLINK REFUSED:", exc)
"""


def test_auto_falls_back_to_polling_in_a_container_and_says_so():
    """In a user namespace of its own (a container) audit refuses and the process connector is
    not to be had (kernels differ in how: some ignore the subscription, which open() sees as no
    answer, others refuse it outright): Auto logs each reason once and polls."""
    result = subprocess.run(["unshare", "--user", "--map-root-user", sys.executable, "-c",
                             FALLBACK_SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "MODE Polling" in result.stdout
    assert "NETLINK REFUSED: " in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 2
    assert "audit not available" in warnings[0] and "initial user namespace" in warnings[0]
    assert "falling back to polling /proc every 0.1 s" in warnings[1]


@pytest.mark.requires_root("the netlink process connector (CAP_NET_ADMIN)")
def test_buffer_overrun_is_counted_as_lost_events(events):
    """A tiny socket buffer and nobody reading: the kernel drops events (ENOBUFS); the
    connector's sequence numbers tell exactly how many were lost."""
    collector = ProcessCollector(events.append, mode="Netlink", receive_buffer=8192)
    collector.open()

    def an_event_on_every_cpu():
        for _ in range(3):
            for cpu in sorted(os.sched_getaffinity(0)):
                subprocess.run(["taskset", "-c", str(cpu), "/bin/true"], check=True)
                collector.read()

    try:
        an_event_on_every_cpu()        # sequence numbers are per CPU: know where each one is
        subprocess.run(["/bin/sh", "-c", "for i in $(seq 300); do /bin/true; done"], check=True,
                       timeout=60)
        collector.read()
        an_event_on_every_cpu()        # the gaps show when the next events arrive
    finally:
        collector.close()
    assert collector.stats["overruns"] >= 1
    # 300 processes make 900 events (fork, exec, exit); a 16 KB buffer holds a few dozen
    assert collector.stats["lost"] >= 500
    assert collector.stats["events"] == len(events)


@pytest.mark.requires_root("a negative nice value (CAP_SYS_NICE)")
def test_start_can_raise_the_reading_thread_priority(events):
    collector = ProcessCollector(events.append, mode="Netlink")
    collector.start(nice=-5)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.getpriority(
                os.PRIO_PROCESS, collector._thread.native_id) != -5:
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, collector._thread.native_id) == -5
        assert os.getpriority(os.PRIO_PROCESS, 0) == 0         # the rest of the process: unchanged
    finally:
        collector.stop()


def test_iot_hub_credentials_on_a_command_line_are_redacted(tree):
    root = tree("proc_tree")
    with open(os.path.join(root, "proc/4100/cmdline"), "wb") as f:
        f.write(b"microagent\0run\0--connection-string\0HostName=h.azure-devices.net;DeviceId=d1;"
                b"SharedAccessKey=c2VjcmV0LWtleQ==\0--sas\0SharedAccessSignature sr=h%2Fdevices%2Fd1"
                b"&sig=abc%2Bdef%3D&se=1795800000\0")
    commandline = ProcessReader(root).event(4100, "exec", 0.0)["commandline"]
    assert commandline == ("microagent run --connection-string HostName=h.azure-devices.net;"
                           "DeviceId=d1;SharedAccessKey=[redacted] --sas SharedAccessSignature "
                           "sr=h%2Fdevices%2Fd1&sig=[redacted]&se=1795800000")

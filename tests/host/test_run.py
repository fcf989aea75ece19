"""`microagent run` on this machine (as root): all six kinds of events from real data sources,
schema-valid; the window in hand sent on SIGTERM; the configuration file."""
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from agent_process import AgentProcess
from host_sim import schema

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
MARKER = "microagent-run-test-%d" % os.getpid()


def _read_until(fd, done, timeout):
    """Reads the terminal FD until DONE(output so far), its end, or TIMEOUT seconds."""
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(output):
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    return output


def _login_and_logout():
    """A real login on a pseudo-terminal (login -f as root writes utmp/wtmp), then exit once the
    shell shows root's prompt."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("login", ["login", "-f", "root"])
    _read_until(fd, lambda output: output.rstrip().endswith(b"#"), 30)
    os.write(fd, b"exit\n")
    _read_until(fd, lambda output: False, 5)
    os.waitpid(pid, 0)


def _traffic(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"x" * 3000)
        s.recv(100)


def _activity():
    for _ in range(20):
        subprocess.run([sys.executable, "-c", "import time; time.sleep(0.05)", MARKER])
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        conn.recv(4000)
        conn.sendall(b"y" * 100)
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    _traffic(port)
    server.close()
    _login_and_logout()


@pytest.mark.requires_root("the DNS collector's raw packet socket and a real login (login -f)")
def test_run_once_prints_all_six_kinds():
    # Caches sized for a busy machine: other programs' processes and loopback connections during
    # the run must not evict the test's own entries from the default 256.
    agent = AgentProcess([MICROAGENT, "run", "--once", "--output", "-", "--seconds", "7",
                          "--cache-size", "65535"])
    agent.wait_ready()
    _activity()
    code, out, err = agent.finish(300)
    assert code == 0, err
    items = {}
    for line in out.splitlines():
        for event in schema.check(line)["Events"]:
            items.setdefault(event["Name"], []).extend(event["Payload"])
    assert {"ProcessCreate", "ConnectionCreate", "Login", "SystemInformation", "Baseline",
            "SBoM"} <= set(items), sorted(items)
    marked = [i for i in items["ProcessCreate"] if MARKER in i["commandline"]]
    assert len(marked) == 1 and marked[0]["hit_count"] == 20, marked
    flows = [i for i in items["ConnectionCreate"] if i["local_address"] == "127.0.0.1"
             and i["bytes_out"] + i["bytes_in"] >= 3000]
    assert flows, items["ConnectionCreate"]
    assert any(i["operation"] == "Login" and i["user_name"] == "root" for i in items["Login"])
    with open("/etc/os-release") as f:
        release = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    assert items["SystemInformation"][0]["os_dist"] == release["NAME"].strip('"')
    installed = subprocess.run(["dpkg-query", "-W", "-f", "${Status}\\n"], capture_output=True,
                               text=True).stdout.count("install ok installed")
    assert len(items["SBoM"]) == installed
    assert all(i["check_result"] in ("Fail", "Error") for i in items["Baseline"])


@pytest.mark.requires_root("the netlink process connector (CAP_NET_ADMIN)")
def test_sigterm_sends_the_window_collected_so_far(tmp_path):
    """systemd stops the service with SIGTERM in the middle of a window: what the window holds
    is written out before the agent exits, not lost."""
    out = tmp_path / "messages.jsonl"
    agent = AgentProcess([MICROAGENT, "run", "--output", str(out), "--window", "3600",
                          "--collectors", "Process"])
    agent.wait_ready()
    for _ in range(3):
        subprocess.run([sys.executable, "-c", "pass", MARKER + "-sigterm"])
    agent.proc.send_signal(signal.SIGTERM)
    code, _, err = agent.finish(60)
    assert code == 0, err
    assert "stopping: sending the current window" in err
    marked = [i for line in out.read_text().splitlines()
              for event in schema.check(line)["Events"] if event["Name"] == "ProcessCreate"
              for i in event["Payload"] if MARKER + "-sigterm" in i["commandline"]]
    assert len(marked) == 1 and marked[0]["hit_count"] == 3, marked


def test_config_file_sets_the_defender_keys(tmp_path):
    config = tmp_path / "microagent.json"
    config.write_text(json.dumps({"$version": 4, "SystemInformation_Disabled": True}))
    proc = subprocess.run([MICROAGENT, "run", "--once", "--seconds", "0.2", "--output", "-",
                           "--collectors", "SystemInformation,SBoM", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {event["Name"] for line in proc.stdout.splitlines()
             for event in schema.check(line)["Events"]}
    assert names == {"SBoM"}


def test_config_file_errors_name_the_file_and_what_is_wrong(tmp_path):
    config = tmp_path / "microagent.json"
    cases = [('{"Process_CacheSize": 64,\n "Login_CacheSize": 8\n', " line 3: not JSON (Expecting ',' delimiter)"),
             ('{"Login_CacheSize": "many", "Process_Cache": 1}',
              ": key Login_CacheSize: expected an integer; key Process_Cache: unknown key"),
             ('[]', ": expected a JSON object of configuration keys")]
    for text, message in cases:
        config.write_text(text)
        proc = subprocess.run([MICROAGENT, "run", "--once", "--output", "-", "--config",
                               str(config)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr == "microagent: error: %s%s\n" % (config, message), proc.stderr

"""The agent as a non-root user with only the capabilities the systemd unit grants sees what
root sees: two `microagent run --once` at the same time, one as root and one as `nobody` with
the unit's AmbientCapabilities (setpriv, as systemd would start it), watch the same activity
(processes, a TCP connection to a name a DNS response just gave, a login) and must report the
same kinds of events with the same contents. Needs root (to start both)."""
import os
import pty
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from agent_process import AgentProcess
from host_sim import schema

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(REPO, "tools", "systemd", "microagent.service")
MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
SYSTEM_PYTHON = "/usr/bin/python3"      # the venv's interpreter may sit where nobody can read
MARKER = "microagent-least-privilege-%d" % os.getpid()
HOST = "least-privilege.contoso.example"
# Colleagues build and test on this machine: caches large enough that their processes and
# connections cannot evict ours within the window.
RUN = ["run", "--once", "--output", "-", "--seconds", "8", "--cache-size", "65535"]
KINDS = {"ProcessCreate", "ConnectionCreate", "Login", "SystemInformation", "Baseline", "SBoM"}


def unit_capabilities():
    with open(UNIT) as f:
        line = next(x for x in f if x.startswith("AmbientCapabilities="))
    return [c.strip().lower()[len("cap_"):] for c in line.split("=", 1)[1].split()]


def unprivileged_agent():
    caps = ",".join("+" + c for c in unit_capabilities())
    site_dir = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    program = ("import site, sys; site.addsitedir(%r); from host_sim.cli import main; "
               "sys.exit(main())" % site_dir)
    return AgentProcess(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         "--no-new-privs", "--inh-caps=-all," + caps,
                         "--ambient-caps=-all," + caps, "--bounding-set=-all," + caps,
                         SYSTEM_PYTHON, "-c", program] + RUN)


def dns_response(name, address):
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0\0\x01\0\x01"
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(address)
    return struct.pack(">HHHHHH", 7, 0x8180, 1, 1, 0, 0) + question + answer


def login_and_logout():
    """A real login on a pseudo-terminal (login -f as root writes utmp/wtmp), then exit, typed
    once root's shell shows its prompt (typed ahead, login may discard it)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("login", ["login", "-f", "root"])
    _read_pty(fd, lambda seen: b"#" in seen, 30)
    os.write(fd, b"exit\n")
    if not _read_pty(fd, lambda seen: False, 30).endswith(b"<EOF>"):
        os.kill(pid, signal.SIGKILL)  # never left waiting on a shell that did not exit
    os.waitpid(pid, 0)


def _read_pty(fd, done, seconds):
    """What FD gives until DONE(all so far), its end (then ending in b"<EOF>") or SECONDS."""
    seen = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done(seen):
        if select.select([fd], [], [], 0.2)[0]:
            try:
                data = os.read(fd, 4096)
            except OSError:  # the pty's other side closed
                data = b""
            if not data:
                return seen + b"<EOF>"
            seen += data
    return seen


def activity(server_address):
    for _ in range(20):
        subprocess.run(["/bin/true", MARKER], check=True)
    net = server_address.rsplit(".", 1)[0]
    resolver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    resolver.bind((net + ".53", 53))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        resolver.sendto(dns_response(HOST, server_address), client.getsockname())
        client.recv(512)
    resolver.close()
    server = socket.socket()
    server.bind((server_address, 0))
    server.listen()

    def serve():
        conn, _ = server.accept()
        conn.recv(4000)
        conn.sendall(b"y" * 100)
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    with socket.create_connection(server.getsockname()) as s:
        s.sendall(b"x" * 3000)
        s.recv(100)
    server.close()
    login_and_logout()


def items_of(out):
    items = {}
    for line in out.splitlines():
        for event in schema.check(line)["Events"]:
            items.setdefault(event["Name"], []).extend(event["Payload"])
    return items


def test_unprivileged_agent_with_the_unit_capabilities_sees_what_root_sees():
    assert os.geteuid() == 0, "needs root: starts one agent as root and one as nobody"
    assert os.path.exists(SYSTEM_PYTHON), "needs Debian's python3 (%s)" % SYSTEM_PYTHON
    server_address = "127.%d.%d.10" % (random.randint(1, 254), random.randint(1, 254))
    root, unprivileged = AgentProcess([MICROAGENT] + RUN), unprivileged_agent()
    root.wait_ready()
    unprivileged.wait_ready()
    activity(server_address)
    results = [agent.finish(300) for agent in (root, unprivileged)]
    for code, _, err in results:
        assert code == 0, err
    as_root, as_user = (items_of(out) for _, out, _ in results)
    unprivileged_log = results[1][2]
    assert "collecting: Process (Audit:" in unprivileged_log, unprivileged_log
    assert "cannot read" not in unprivileged_log and "not started" not in unprivileged_log, \
        unprivileged_log
    assert KINDS <= set(as_root), sorted(as_root)
    assert set(as_user) == set(as_root)
    for items in (as_root, as_user):
        marked = [i for i in items["ProcessCreate"] if i["commandline"] == "/bin/true " + MARKER]
        assert len(marked) == 1 and marked[0]["hit_count"] == 20, marked
        flows = [i for i in items["ConnectionCreate"] if i["remote_address"] == server_address
                 and i["bytes_out"] >= 3000]
        assert len(flows) == 1 and flows[0]["dns_hit_count"] == 1, items["ConnectionCreate"]
        assert flows[0]["extended_properties"] == {"host_name": HOST}
        assert any(i["operation"] == "Login" and i["user_name"] == "root" for i in items["Login"])
    for kind in ("SystemInformation", "SBoM"):
        assert as_user[kind] == as_root[kind], kind
    checks = [{(i["check_id"], i["check_result"], i["error"]) for i in items["Baseline"]}
              for items in (as_root, as_user)]
    assert checks[0] == checks[1], checks[0] ^ checks[1]

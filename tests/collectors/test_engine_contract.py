"""The collectors' output goes through the lead's engine and encoder: raw events pass the trace
checks, aggregate as docs/spec.md section 3 says, and every message validates against the schema."""
import json
import socket
import subprocess
import time
import uuid

import pytest

from collector_fixtures import fixture_path
from host_sim import schema
from host_sim.collectors import baseline, sbom, sysinfo
from host_sim.collectors.dns import DnsCollector
from host_sim.collectors.login import LoginCollector
from host_sim.collectors.network import NetworkCollector
from host_sim.collectors.process import ProcessCollector, ProcessReader
from host_sim.engine import build_host_engine
from microagent.trace import Replay

AGENT_ID = "00000000-0000-4000-8000-00000000c011"


class Window:
    """A host engine fed through the trace path (docs/spec.md section 1 lines, one long window); its
    messages are kept, parsed and schema-checked."""

    def __init__(self):
        self.messages = []
        self.engine = build_host_engine(256, self._sink, lambda text: None, AGENT_ID, 256 * 1024)
        self.events = []

    def _sink(self, buffer, length):
        self.messages.append(schema.check(bytes(buffer[:length]).decode()))

    def record(self, events):
        self.events.extend(events)

    def flush(self):
        replay = Replay(self.engine, 3600 * 1000)
        for number, event in enumerate(sorted(self.events, key=lambda e: e["t"]), 1):
            replay.feed(json.dumps(event) + "\n", "event %d" % number)
        replay.close_window()

    def payload(self, name):
        return [item for m in self.messages for e in m["Events"] if e["Name"] == name
                for item in e["Payload"]]


def test_fixture_events_pass_the_engine_and_the_schema():
    window = Window()
    reader = ProcessReader(fixture_path("proc_tree"))
    window.record([reader.event(pid, "exec", time.time()) for pid in (4100, 4101, 2)])
    for root in ("login_tree", "login_corrupt", "authlog_tree"):
        events = []
        collector = LoginCollector(events.append, root=fixture_path(root), from_start=True)
        collector.open()
        collector.poll()
        window.record([dict(e, t=time.time()) for e in events])   # one window for all
    with open(fixture_path("dns/packets.json")) as f:
        for case in json.load(f):
            events = []
            DnsCollector(events.append).handle_packet(bytes.fromhex(case["packet"]),
                                                      case["ethertype"], time.time())
            window.record(events)
    window.flush()
    processes = window.payload("ProcessCreate")
    long_line = [p for p in processes if p["commandline"].startswith("/bin/sh -c echo AAA")]
    assert len(long_line) == 1 and long_line[0]["commandline"].endswith("...[truncated]")
    assert len(long_line[0]["commandline"].encode()) <= 2048
    assert any(p["commandline"] == "/usr/bin/python3 -c print('caf\ufffd') arg with space"
               for p in processes)
    logins = window.payload("Login")
    assert len(logins) == 8 + 3 + 8
    assert {login["operation"] for login in logins} == {"Login", "Logout", "LoginFailed"}


def test_triggered_payloads_validate():
    window = Window()
    now = int(time.time() * 1000)
    window.engine.send_periodic("SystemInformation", sysinfo.collect("/"), now)
    window.engine.send_periodic("SystemInformation", sysinfo.collect(fixture_path("sysinfo_tree")), now)
    window.engine.send_periodic("Baseline", baseline.collect("/"), now)
    window.engine.send_periodic("SBoM", sbom.collect("/"), now)
    assert len(window.payload("SBoM")) == len(sbom.collect("/"))
    assert window.payload("Baseline") and window.payload("SystemInformation")


def mine(events, commandline):
    return [e for e in events if e["commandline"] == commandline]


@pytest.mark.requires_root("its processes are to be reported as root's (user_id 0)")
def test_50_processes_make_one_process_create_entry_with_hit_count_50():
    """The issue's live test: netlink sees every exec, the engine aggregates them."""
    events = []
    collector = ProcessCollector(events.append, mode="Netlink")
    collector.start()
    # sleep adds up its arguments: a unique tiny second one makes the command line distinctive,
    # and sleep neither forks nor execs again (either would make or change hits)
    commandline = "/bin/sleep 0.3 0.%012d" % (uuid.uuid4().int % 10**12)
    try:
        script = 'i=0; while [ $i -lt 50 ]; do %s & i=$((i+1)); done; wait' % commandline
        subprocess.run(["/bin/sh", "-c", script], check=True, timeout=60)
        deadline = time.monotonic() + 10     # the reading thread catches up with the 50 execs
        while time.monotonic() < deadline and sum(
                e["type"] == "exec" for e in mine(events, commandline)) < 50:
            time.sleep(0.02)
    finally:
        collector.stop()
    window = Window()
    # only ours: a busy machine's other processes would evict it from the 256-entry cache
    window.record(mine(events, commandline))
    window.flush()
    entries = [p for p in window.payload("ProcessCreate")
               if p["commandline"] == commandline]
    assert len(entries) == 1
    assert entries[0]["hit_count"] == 50 and entries[0]["user_id"] == 0


def test_live_connection_bytes_reach_the_connection_create_entry(private_network):
    events = []
    collector = NetworkCollector(events.append, dump_interval=3600)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    collector.open()
    try:
        for _ in range(3):
            client = socket.create_connection(server.getsockname(), timeout=10)
            accepted, _ = server.accept()
            client.sendall(b"z" * 4000)
            received = 0
            while received < 4000:
                received += len(accepted.recv(65536))
            client.close()
            accepted.close()
        deadline = time.monotonic() + 5
        port = server.getsockname()[1]
        while time.monotonic() < deadline and sum(
                1 for e in events if e["local_port"] == port) < 3:
            collector.read()
            time.sleep(0.02)
    finally:
        collector.close()
        server.close()
    window = Window()
    window.record(events)
    window.flush()
    inbound = [c for c in window.payload("ConnectionCreate") if c["local_port"] == port]
    assert len(inbound) == 3                      # three client ports: three entries
    assert all(c["bytes_in"] == 4000 + 1 and c.get("direction") == "in" for c in inbound)

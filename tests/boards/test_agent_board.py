"""The agent on the virtual board, end to end: tools/flash.py deploys it onto the real unix port
behind a pty, an application on the board opens sockets and resolves names, and the local IoT Hub
emulator stores what the agent sends over TLS: ConnectionCreate with the right bytes, DNS hit
counts and host names, SystemInformation and SBoM; the agent's peak heap stays in the unix
profile's budget. Also: the hub killed mid-run, and the outbox's bound on what is lost."""
import json
import os
import socket
import threading

import pytest

import board_profiles
from agent_helpers import Console, events, items, provision, security_messages
from board_helpers import run_tool
from free_port import free_port
from hub_emulator.process import HubProcess
from host_sim import schema

WINDOW_MS = 4000
DEVICE = "board-1"

APP = """
import asyncio, socket
TCP_PORT = %(tcp)d
UDP_PORT = %(udp)d
LISTEN_PORT = %(listen)d

async def main():
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(socket.getaddrinfo('127.0.0.1', LISTEN_PORT)[0][-1])
    server.listen(2)
    server.setblocking(False)
    await asyncio.sleep_ms(300)
    s = socket.socket()
    s.connect(socket.getaddrinfo('localhost', TCP_PORT)[0][-1])
    s.send(b'a' * 1000)
    got = 0
    while got < 300:
        got += len(s.recv(300 - got))
    s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = socket.getaddrinfo('localhost', UDP_PORT)[0][-1]
    for i in range(3):
        u.sendto(b'u' * 64, target)
    u.close()
    print('app: sent')
    while True:
        try:
            c, _ = server.accept()
        except OSError:
            await asyncio.sleep_ms(50)
            continue
        data = c.recv(100)
        c.write(b'k' * (2 * len(data)))
        c.close()
        print('app: served', len(data))
"""


class Peer:
    """The other end of the application's traffic, on the host: a TCP server that answers 300
    bytes once it has 1000, and a UDP socket that counts what it receives."""

    def __init__(self):
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(4)
        self.tcp.settimeout(0.2)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.udp.settimeout(0.2)
        self.tcp_received = 0
        self.udp_received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                try:
                    self.udp_received += len(self.udp.recv(2048))
                except OSError:
                    pass
                continue
            with conn:
                conn.settimeout(5)
                while self.tcp_received < 1000:
                    data = conn.recv(4096)
                    if not data:
                        break
                    self.tcp_received += len(data)
                conn.sendall(b"r" * 300)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.tcp.close()
        self.udp.close()


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


def _flash(board, boards_dir=None, log_seconds=30):
    extra = ["--boards-dir", boards_dir] if boards_dir else []
    return run_tool("flash.py", "--board", "unix", "--port", board.port, "--json",
                    "--log-seconds", str(log_seconds), *extra, timeout=180)


def _connect_to_app(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(payload)
        answer = b""
        while True:
            data = c.recv(4096)
            if not data:
                return answer
            answer += data


def test_the_agent_reports_the_applications_traffic_to_the_hub(virtual_board, peer, tmp_path):
    listen_port = free_port()
    udp_port = peer.udp.getsockname()[1]
    app = APP % {"tcp": peer.tcp.getsockname()[1], "udp": udp_port, "listen": listen_port}
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device(DEVICE)
    with hub:
        provision(virtual_board.flash, hub, connection_string, WINDOW_MS, app)
        proc = _flash(virtual_board)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        started = [json.loads(line) for line in proc.stdout.splitlines() if '"started"' in line]
        assert started and "board=unix" in started[0]["line"]
        console = Console(virtual_board.port)
        try:
            # the peer's counts too: flash.py may have read the line on its way out
            console.wait_for(lambda c: "app: sent" in c.lines or (
                peer.tcp_received >= 1000 and peer.udp_received >= 3 * 64), 20, "the application's traffic")
            assert _connect_to_app(listen_port, b"q" * 40) == b"k" * 80  # an inbound connection
            console.wait_for(lambda c: any(w["connections"] >= 3 for w in c.windows())
                             or sum(w["connections"] for w in c.windows()) >= 4, 30,
                             "windows with the connections")
            console.wait_for(lambda c: c.windows() and c.windows()[-1]["queued"] == 0, 20,
                             "an empty outbox")
            windows = console.windows()
        finally:
            console.close()
        messages = security_messages(hub, DEVICE)

    for message in messages:
        assert schema.errors(message) == [], message
    assert peer.tcp_received == 1000 and peer.udp_received == 192
    connections = items(messages, "ConnectionCreate")
    tcp_out = [c for c in connections if c["transport_protocol"] == "TCP" and c["direction"] == "out"
               and c["remote_port"] == peer.tcp.getsockname()[1]]
    assert len(tcp_out) == 1, connections
    assert tcp_out[0]["bytes_out"] == 1000 and tcp_out[0]["bytes_in"] == 300
    assert tcp_out[0]["hit_count"] == 1 and tcp_out[0]["remote_address"] == "127.0.0.1"
    # Two getaddrinfo('localhost') calls in that window resolved 127.0.0.1.
    assert tcp_out[0]["dns_hit_count"] == 2
    assert tcp_out[0]["extended_properties"] == {"host_name": "localhost"}
    udp = [c for c in connections if c["transport_protocol"] == "UDP"]
    assert [(c["remote_port"], c["bytes_out"], c["bytes_in"], c["direction"]) for c in udp] == \
        [(udp_port, 192, 0, "out")]
    inbound = [c for c in connections if c["direction"] == "in"]
    assert [(c["local_port"], c["bytes_in"], c["bytes_out"], c["transport_protocol"]) for c in inbound] \
        == [(listen_port, 40, 80, "TCP")]
    # The agent's own TLS connection to the hub is not the application's: it is not reported.
    assert not [c for c in connections if c["remote_port"] == hub.port]

    sysinfo = items(messages, "SystemInformation")
    assert sysinfo and sysinfo[0]["os_dist"].startswith("micropython") and sysinfo[0]["os_platform"] == "linux"
    sbom = items(messages, "SBoM")
    assert {"microagent", "micropython-linux"} <= {i["name"] for i in sbom}
    assert all(e["Category"] == "Periodic" for e in events(messages, "SBoM"))

    budget = board_profiles.load("unix")["heap_budget_bytes"]
    peak = max(w["peak"] for w in windows)
    assert 0 < peak <= budget, "agent heap peak %d exceeds the unix budget %d" % (peak, budget)


def _unix_profile_with(tmp_path, change):
    """A boards folder whose unix profile is the real one after CHANGE(profile)."""
    boards = tmp_path / "boards"
    boards.mkdir()
    source = board_profiles.BOARDS_DIR
    with open(os.path.join(source, "schema.json")) as f:
        (boards / "schema.json").write_text(f.read())
    profile = board_profiles.load("unix")
    change(profile)
    (boards / "unix.json").write_text(json.dumps(profile))
    return str(boards)


def _profile_with_small_outbox(tmp_path, max_messages):
    """A boards folder whose unix profile keeps at most MAX_MESSAGES unsent messages."""
    return _unix_profile_with(tmp_path, lambda p: p["outbox"].update(max_messages=max_messages))


FILL_APP = """
import asyncio, socket
async def main():
    await asyncio.sleep_ms(3000)  # after flash.py let go of the console: its lines are read here
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for port in range(%(first)d, %(first)d + %(peers)d):
        u.sendto(b'x', socket.getaddrinfo('127.0.0.1', port)[0][-1])
    u.close()
    print('app: filled')
    while True:
        await asyncio.sleep_ms(1000)
"""


def test_a_full_network_cache_warns_once_in_its_window_and_the_hub_gets_the_drop_count(
        virtual_board, tmp_path):
    """Socket events on the board go through the engine's entry points, as in replay: the
    application talks to 7 peers in one window with a cache of 4, so the console warns once and
    DroppedEvents says 3."""
    boards = _unix_profile_with(tmp_path, lambda p: p["config"].update(NetworkActivity_CacheSize=4))
    first = 41000 + os.getpid() % 1000 * 10
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device(DEVICE)
    with hub:
        provision(virtual_board.flash, hub, connection_string, 1500,
                  FILL_APP % {"first": first, "peers": 7})
        proc = _flash(virtual_board, boards, log_seconds=0.5)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        console = Console(virtual_board.port)
        try:
            console.wait_for(lambda c: any(w["lost"] for w in c.windows()), 20,
                             "a window with connections lost to the full cache")
            console.wait_for(lambda c: items(security_messages(hub, DEVICE), "DroppedEvents"), 20,
                             "DroppedEvents at the hub")
            lines = list(console.lines)
            flash_lines = proc.stdout.splitlines()
        finally:
            console.close()
        messages = security_messages(hub, DEVICE)
    warning = ("microagent: warning: ConnectionCreate cache full (4 entries): dropping new "
               "entries this window; raise NetworkActivity_CacheSize")
    assert sum(1 for line in lines + flash_lines if warning in line) == 1, lines
    assert [w["lost"] for w in console.windows() if w["lost"]] == [3]
    dropped = items(messages, "DroppedEvents")
    assert [(d["collector"], d["cache_size"], d["dropped"]) for d in dropped] == \
        [("ConnectionCreate", 4, 3)]
    peers = [c["remote_port"] for c in items(messages, "ConnectionCreate")]
    assert peers == list(range(first, first + 4))  # the first four: a full cache drops new ones


def _sequence_numbers(hub):
    # Message ids are {boot id}-{outbox sequence number}: one boot, so the numbers say which
    # of the agent's messages arrived.
    mids = [m["properties"]["$.mid"] for m in hub.messages(DEVICE)]
    assert len({mid.split("-")[0] for mid in mids}) == 1, mids
    return sorted({int(mid.split("-")[1]) for mid in mids})


def test_hub_killed_mid_run_loses_at_most_what_the_outbox_bound_says_and_reports_it(
        virtual_board, tmp_path):
    """SystemInformation and SBoM go out every window (2 messages). The hub is killed for
    several windows: the outbox (3 messages here) keeps the newest, drops the oldest and counts
    them; after the hub is back, every message is either delivered or counted as dropped."""
    boards = _profile_with_small_outbox(tmp_path, 3)
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device(DEVICE)
    with hub:
        provision(virtual_board.flash, hub, connection_string, 1500)
        proc = _flash(virtual_board, boards)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        console = Console(virtual_board.port)
        try:
            console.wait_for(lambda c: c.windows() and c.windows()[-1]["delivered"] >= 2, 20,
                             "delivery before the outage")
            hub.kill()
            console.wait_for(lambda c: c.windows()[-1]["dropped"] >= 3, 30,
                             "the outbox overflowing while the hub is down")
            hub.start()
            dropped_before = console.windows()[-1]["dropped"] + console.windows()[-1]["unconfirmed"]
            console.wait_for(lambda c: c.windows()[-1]["queued"] == 0
                             and c.windows()[-1]["delivered"] > 2, 40,
                             "delivery after the hub came back")
            last = console.windows()[-1]
        finally:
            console.close()
        received = _sequence_numbers(hub)

    produced = last["delivered"] + last["dropped"] + last["unconfirmed"]
    assert last["dropped"] + last["unconfirmed"] >= dropped_before >= 3
    assert last["expired"] == 0 and last["too_large"] == 0
    # Every message the agent made is accounted for: the hub has it, or it is counted as dropped
    # (never sent: certainly missing) or as unconfirmed (sent before the hub died, no PUBACK:
    # the hub may have stored it). So the count never hides a loss nor invents one.
    missing = [n for n in range(1, max(received) + 1) if n not in received]
    assert missing and last["dropped"] <= len(missing) <= last["dropped"] + last["unconfirmed"], \
        (missing, last)
    assert max(received) >= produced
    # Only oldest messages are dropped: the outbox's newest 3 at the outage's end all arrived.
    assert all(n in received for n in range(max(missing) + 1, max(missing) + 4))
    hub_log = console.lines
    assert any("hub:" in line and "retrying" in line for line in hub_log)


def test_twin_changes_apply_at_the_next_window_and_bad_values_are_refused(virtual_board, tmp_path):
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device(DEVICE)
    with hub:
        provision(virtual_board.flash, hub, connection_string, 1500)
        proc = _flash(virtual_board)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        console = Console(virtual_board.port)
        try:
            # Connected: a window reports a delivery, or the hub's log shows the twin exchange
            # (flash.py may have read the board's "hub: connected" line on its way out).
            console.wait_for(lambda c: any(w["delivered"] for w in c.windows())
                             or "twin/PATCH/properties/desired" in hub.log(), 20,
                             "the hub connection")
            hub.set_desired(DEVICE, {"NetworkActivity_CacheSize": 8, "SBoM_Disabled": "yes"})
            console.wait_for(lambda c: any("network cache resized to 8 entries" in line  # and a line after
                                           for line in c.lines[:-1]), 20, "the cache resized")
            twin = hub.twin(DEVICE)
        finally:
            console.close()
    lines = console.lines
    changed = next(i for i, line in enumerate(lines) if "config from the module twin" in line)
    resized = next(i for i, line in enumerate(lines) if "network cache resized" in line)
    # Applied when the window open at the change closes (the resize is logged right before that
    # window's report), not when the change arrived.
    assert changed < resized and lines[resized + 1].startswith("microagent: window")
    assert "NetworkActivity_CacheSize" in lines[changed]
    assert any("SBoM_Disabled rejected (expected true or false)" in line for line in lines)
    reported = twin["reported"]
    assert reported["config"]["NetworkActivity_CacheSize"] == 8
    assert "SBoM_Disabled" in reported["config_rejected"]


def test_an_agent_failure_restarts_it_with_backoff_and_the_application_keeps_running(virtual_board, tmp_path):
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device(DEVICE)
    app = ("import asyncio\n"
           "async def main():\n"
           "    n = 0\n"
           "    while True:\n"
           "        n += 1\n"
           "        print('app: alive', n)\n"
           "        await asyncio.sleep_ms(500)\n")
    with hub:
        provision(virtual_board.flash, hub, connection_string, 1500, app)
        os.remove(os.path.join(virtual_board.flash, "microagent_ca.der"))  # the agent cannot start
        proc = _flash(virtual_board, log_seconds=0.5)
        assert proc.returncode == 1 and "no CA certificate" in proc.stdout
        console = Console(virtual_board.port)
        try:
            console.wait_for(lambda c: any("restarting in 4000 ms" in line for line in c.lines), 20,
                             "three restarts")
            # The missing file arrives: the next restart runs.
            with open(os.path.join(virtual_board.flash, "microagent_ca.der"), "wb") as f:
                f.write(b"\x30\x00")  # not a certificate: fails later, in the TLS handshake
            console.wait_for(lambda c: any(line.startswith("microagent: started") for line in c.lines),
                             20, "the agent started after a restart")
        finally:
            console.close()
    lines = console.lines
    delays = [line.split("restarting in ")[1] for line in lines if "restarting in" in line]
    # Each failure doubles the wait (the first, 1000 ms, may have gone to flash.py's tail);
    # the agent that started with a bad CA fails in its first window and keeps doubling.
    expected = ["1000 ms", "2000 ms", "4000 ms", "8000 ms", "16000 ms"]
    start = expected.index(delays[0])
    assert delays == expected[start:start + len(delays)], delays
    alive = [line for line in lines if line.startswith("app: alive")]
    assert len(alive) >= 10  # the application ran all along


def test_flash_writes_credentials_ca_and_port_and_the_agent_reaches_the_hub(virtual_board, tmp_path):
    """Everything through flash.py (no files placed by hand): the connection string, the hub's
    CA as PEM (converted to DER) and its port; SystemInformation goes out right after start."""
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device(DEVICE)
    key = connection_string.split("SharedAccessKey=")[1].split(";")[0]
    with hub:
        proc = run_tool("flash.py", "--board", "unix", "--port", virtual_board.port, "--json",
                        "--connection-string", connection_string, "--ca", hub.ca,
                        "--hub-port", hub.port, "--log-seconds", "20", timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert key not in proc.stdout + proc.stderr
        with open(hub.ca_der, "rb") as f:
            with open(os.path.join(virtual_board.flash, "microagent_ca.der"), "rb") as on_board:
                assert on_board.read() == f.read()
        with open(os.path.join(virtual_board.flash, "microagent_device.json")) as f:
            assert json.load(f) == {"connection_string": connection_string, "port": hub.port}
        console = Console(virtual_board.port)
        try:
            console.wait_for(lambda c: len(hub.messages(DEVICE)) >= 2, 20, "the first messages")
        finally:
            console.close()
        names = {e["Name"] for e in events(security_messages(hub, DEVICE), "SystemInformation")
                 + events(security_messages(hub, DEVICE), "SBoM")}
    assert names == {"SystemInformation", "SBoM"}


def test_flash_refuses_a_ca_that_is_no_certificate_and_a_port_without_credentials(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("hello\n")
    proc = run_tool("flash.py", "--board", "esp32", "--dry-run", "--ca", bad)
    assert proc.returncode == 2 and "--ca %s: neither a PEM nor a DER certificate" % bad in proc.stderr + proc.stdout
    proc = run_tool("flash.py", "--board", "esp32", "--dry-run", "--hub-port", "8884")
    assert proc.returncode == 2
    assert "--hub-port is kept with the connection string" in proc.stderr + proc.stdout

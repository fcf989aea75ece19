"""The console's HTTP server under idle, slow and odd clients (issue 24, finding 9), with real
sockets: idle connections time out, 500 of them cost no thread each and do not keep a fresh
client from its page, the listen backlog is large, no query gives a traceback, and every answer
carries nosniff, frame-ancestors 'none' and a Server header without a version."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

from host_sim.cloud.console.server import ConsoleServer
from host_sim.cloud.console.store_site import StoreSite
from host_sim.cloud.store import open_store

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")


class InProcess:
    """A ConsoleServer over a real (empty) cloud store, serving from a thread; error lines kept."""

    def __init__(self, tmp_path, **options):
        self.store = open_store(str(tmp_path / "cloud.db"))
        self.errors = []
        self.server = ConsoleServer(("127.0.0.1", 0), StoreSite(self.store), error_log=self.errors.append,
                                    **options)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.store.close()


@pytest.fixture
def console(tmp_path):
    server = InProcess(tmp_path, idle_timeout=1.0)
    yield server
    server.close()


def get(port, path):
    """(status, headers, body text) of GET PATH; error statuses too."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=30) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def closed_by_server(sock):
    """True when the server closes SOCK (EOF or reset) within the socket's timeout."""
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_an_idle_connection_is_closed_after_the_idle_timeout(console):
    with socket.create_connection(("127.0.0.1", console.port), timeout=20) as idle:
        assert closed_by_server(idle)


def test_a_request_sent_a_byte_at_a_time_is_closed_at_the_deadline(console):
    """A slow client that keeps sending (each byte resets a plain socket timeout) is closed
    too: the idle timeout is the time allowed for the whole request head."""
    with socket.create_connection(("127.0.0.1", console.port), timeout=20) as slow:
        slow.settimeout(0.2)
        started = time.monotonic()
        closed = False
        for byte in b"GET / HTTP/1.0\r\nX-Slow: " + b"a" * 200:
            try:
                slow.send(bytes([byte]))
                if slow.recv(4096) == b"":
                    closed = True
                    break
            except socket.timeout:
                continue
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed, "still open after %.1f s of a slow request" % (time.monotonic() - started)


def test_no_query_gives_a_traceback_and_errors_are_one_line(console):
    """`/?units=%C2%B2` raised ValueError (int('²')) in a handler thread: a traceback."""
    for path in ("/?units=%C2%B2", "/?units=%D9%A3", "/?units=99999999999999999999999", "/?tier=%00",
                 "/device?id=%FF%FE", "/alerts?since=%C2%B2", "/%E2%80%AE", "/?units=1&units=x"):
        status, _, body = get(console.port, path)
        assert status in (200, 400, 404), (path, status)
        assert "Traceback" not in body
    assert get(console.port, "/?units=%C2%B2")[0] == 400
    assert console.errors == []


class FailingSite(StoreSite):
    """The store's site with one page whose rendering fails as a bug would (the server's
    contract: any exception from a site is a 500 and one log line)."""

    def get(self, path, query):
        if path == "/fails":
            raise KeyError(query.get("k"))
        return super().get(path, query)


def test_a_page_that_fails_is_a_500_and_one_log_line(tmp_path):
    console = InProcess(tmp_path)
    console.server.site = FailingSite(console.store)
    try:
        status, _, body = get(console.port, "/fails?k=%1B%5B2J")
        assert status == 500 and "Traceback" not in body and "KeyError" not in body
        assert console.errors == ["console: error answering GET /fails?k=%1B%5B2J: KeyError"]
        assert get(console.port, "/?units=1")[0] == 200     # and the server goes on
    finally:
        console.close()


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET /no-such-page HTTP/1.0\r\n\r\n",
    b"BREW / HTTP/1.0\r\n\r\n",                       # http.server's own 501 page
    b"POST / HTTP/1.0\r\nContent-Length: 0\r\n\r\n",  # 405
    b"GET / HTTP/9.9\r\n\r\n",                        # http.server's own 505 page
])
def test_every_answer_carries_the_security_headers(console, request_bytes):
    with socket.create_connection(("127.0.0.1", console.port), timeout=20) as client:
        client.sendall(request_bytes)
        answer = b""
        while True:
            chunk = client.recv(65536)
            if not chunk:
                break
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    headers = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    assert headers["x-content-type-options"] == ["nosniff"]
    [csp] = headers["content-security-policy"]        # one policy, merged
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert headers["server"] == ["microagent-console"]
    assert "python" not in head.lower()


def console_process(tmp_path):
    open_store(str(tmp_path / "cloud.db")).close()
    proc = subprocess.Popen([MICROAGENT, "console", "--store", str(tmp_path / "cloud.db"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.match(r"console: http://127\.0\.0\.1:(\d+)/", line)
    assert match, line + proc.stderr.read()
    return proc, int(match.group(1))


def threads_of(pid):
    with open("/proc/%d/status" % pid) as status:
        return int(re.search(r"^Threads:\s+(\d+)", status.read(), re.M).group(1))


def test_500_idle_connections_cost_no_thread_each_and_a_fresh_client_gets_its_page(tmp_path):
    proc, port = console_process(tmp_path)
    idle = []
    try:
        threads_before = threads_of(proc.pid)
        for _ in range(500):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=20))
        # the server has taken them all in: a request after them is answered...
        status, headers, body = get(port, "/?units=1")
        assert status == 200 and "<html" in body.lower()
        # ...by the threads it had before the flood
        assert threads_of(proc.pid) == threads_before
        # and the flood is still held open (the idle timeout is 30 s): not refused, not served
        idle[0].settimeout(0.1)
        with pytest.raises(socket.timeout):
            idle[0].recv(1)
    finally:
        for sock in idle:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert "Traceback" not in proc.stderr.read()


def test_the_listen_backlog_is_larger_than_socketservers_5(tmp_path):
    proc, port = console_process(tmp_path)
    try:
        listing = subprocess.run(["ss", "-ltnH", "sport = :%d" % port], capture_output=True, text=True,
                                 check=True).stdout.split()
        assert int(listing[2]) >= 128      # Send-Q of a listening socket: its backlog
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

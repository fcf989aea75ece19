"""The device key in a firmware-engine replay that sends to a hub: never in a file, on argv or
in the MicroPython child's environment, and nothing left behind when the replay is killed
(SIGTERM or SIGKILL) mid-flight: no credentials file, no MicroPython process."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mosquitto_broker import write_certs  # tools/, on the path from conftest.py

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
KEY = "c2VjcmV0LWtleS1vZi10aGUtdGVzdC1kZXZpY2UtMDE="
CONNECTION_STRING = ("HostName=probe-hub.local;DeviceId=dev1;SharedAccessKey=%s;"
                     "GatewayHostName=127.0.0.1" % KEY)


def children(pid):
    """Process ids whose parent is PID."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(name))
    return found


def alive(pid):
    """True while PID runs (a zombie waiting for its reaper counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("not within %ds: %s" % (timeout, what))
        time.sleep(0.05)


@pytest.fixture
def silent_hub():
    """A TCP listener that accepts and never answers: the replay's TLS handshake hangs there,
    so the replay is caught mid-flight, after its child began network I/O."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(60)
    yield server
    server.close()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "term"])
def test_killed_replay_leaves_no_key_and_no_child(tmp_path, silent_hub, signum):
    trace = tmp_path / "t.jsonl"
    trace.write_text('{"kind":"dns","t":1700000000,"hostname":"a.example","address":"1.2.3.4"}\n')
    # A real CA, so the child gets past loading it and waits in the handshake (an unparsable
    # one ends the child right after its TCP connect, racing this test's look at it).
    ca = write_certs(tmp_path)["ca.pem"]
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = dict(os.environ, MICROAGENT_CONNECTION_STRING=CONNECTION_STRING, TMPDIR=str(private_tmp))
    proc = subprocess.Popen([MICROAGENT, "replay", str(trace), "--ca", str(ca), "--port",
                             str(silent_hub.getsockname()[1]), "--timeout", "60"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        connection, _ = silent_hub.accept()  # the child is doing network I/O now
        [child] = children(proc.pid)
        with open("/proc/%d/environ" % child, "rb") as f:
            environ = f.read()
        with open("/proc/%d/cmdline" % child, "rb") as f:
            argv = f.read()
        assert b"MICROAGENT_CONNECTION_STRING" not in environ and KEY.encode() not in environ
        assert KEY.encode() not in argv
        assert os.listdir(private_tmp) == []  # the key went down a pipe, not into a file
        os.kill(proc.pid, signum)
        proc.wait(30)
        wait_until(lambda: not alive(child), 10, "MicroPython child %d dies with its parent"
                   % child)
        connection.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert os.listdir(private_tmp) == []
    assert KEY.encode() not in proc.stdout.read() + proc.stderr.read()

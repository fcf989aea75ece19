import json
import socket
import subprocess
import sys
import threading
import uuid

import pytest


@pytest.mark.requires_root("the netlink process connector (CAP_NET_ADMIN)")
def test_record_writes_a_time_ordered_trace_of_live_events(tmp_path):
    marker = "record-test-" + uuid.uuid4().hex
    trace = tmp_path / "trace.jsonl"
    recorder = subprocess.Popen([sys.executable, "-m", "host_sim.cli", "record", "--seconds", "2",
                                 "--collectors", "process,network", "--output", str(trace)],
                                stderr=subprocess.PIPE, text=True)
    assert recorder.stderr.readline().startswith("microagent: recording for 2 s")
    subprocess.run(["/bin/sh", "-c", "sleep 0.5", marker], check=True)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    def serve():
        conn, _ = server.accept()
        with conn:
            while conn.recv(100):
                pass

    reader = threading.Thread(target=serve, daemon=True)
    reader.start()
    with socket.create_connection(server.getsockname()) as client:
        client.sendall(b"hello")
    reader.join(10)
    server.close()
    assert recorder.wait(30) == 0, recorder.stderr.read()
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [e["t"] for e in events] == sorted(e["t"] for e in events)
    assert any(e["kind"] == "process" and e["commandline"] == "/bin/sh -c sleep 0.5 " + marker
               for e in events)
    assert any(e["kind"] == "connection" and e["remote_port"] == port and e["bytes_out"] >= 5
               for e in events)


def test_record_rejects_an_unknown_collector(capsys):
    from host_sim.cli import main
    assert main(["record", "--collectors", "process,gpu"]) == 2
    assert "--collectors: unknown gpu" in capsys.readouterr().err

"""`microagent hub ...`: the commands a person runs, through the real `microagent` entry point."""
import base64
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from paho_device import PahoDevice

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")


def microagent(*args, timeout=30):
    return subprocess.run([MICROAGENT, "hub"] + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


def test_add_device_prints_a_connection_string(tmp_path):
    result = microagent("add-device", "--data", tmp_path, "gateway-7")
    assert result.returncode == 0, result.stderr
    fields = dict(part.split("=", 1) for part in result.stdout.strip().split(";"))
    assert fields["HostName"] == "microagent-hub.local" and fields["DeviceId"] == "gateway-7"
    assert fields["GatewayHostName"] == "127.0.0.1"
    assert len(base64.b64decode(fields["SharedAccessKey"])) == 32
    module = microagent("add-device", "--data", tmp_path, "gateway-7/DefenderIotMicroAgent").stdout
    assert ";DeviceId=gateway-7;ModuleId=DefenderIotMicroAgent;" in module


@pytest.mark.parametrize("args,error", [
    (["add-device", "dup"], "device 'dup' is already registered"),
    (["add-device", "has space"], "is not a valid IoT Hub id"),
    (["set-desired", "ghost", "a=1"], "device 'ghost' is not registered"),
    (["set-desired", "dup", "novalue"], "'novalue' is not KEY=VALUE"),
])
def test_user_errors_are_one_line_exit_2(tmp_path, args, error):
    microagent("add-device", "--data", tmp_path, "dup")
    result = microagent(args[0], "--data", tmp_path, *args[1:])
    assert result.returncode == 2
    assert result.stderr.strip() == "microagent: error: " + result.stderr.strip().split("error: ", 1)[1]
    assert error in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_commands_on_an_empty_directory_say_so(tmp_path):
    result = microagent("messages", "--data", tmp_path / "nothing")
    assert result.returncode == 2 and "holds no hub data" in result.stderr


def test_serve_announces_itself_and_stops_on_sigterm(tmp_path):
    data = tmp_path / "hub"
    proc = subprocess.Popen([MICROAGENT, "hub", "serve", "--data", data, "--port", "0", "--plain-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        state = json.loads((data / "hub.json").read_text())
        assert line.startswith("hub microagent-hub.local listening on mqtts://127.0.0.1:%d (TLS, CA %s)"
                               % (state["port"], data / "ca.pem"))
        assert "mqtt://127.0.0.1:%d (plain)" % state["plain_port"] in line
        assert state["pid"] == proc.pid
        for port in (state["port"], state["plain_port"]):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        # the same port again: refused with one clear line
        clash = microagent("serve", "--data", tmp_path / "other", "--port", state["port"])
        assert clash.returncode == 2
        assert clash.stderr.startswith("microagent: error: cannot listen on 127.0.0.1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not (data / "hub.json").exists()
    finally:
        proc.kill()
        proc.wait()


def test_messages_table_and_json(hub):
    hub.add_device("dev2")
    for identity, topic, body in [
            ("dev1", "%24.ct=application%2Fjson&%24.ce=utf-8",
             b'{"Events": [{"Name": "Login", "Payload": [{}, {}]}, {"Name": "SBoM", "Payload": []}]}'),
            ("dev2", "note=hello%20world", b"not json\nat all"),
            ("dev1", "", b"\xff\xfe")]:
        device = PahoDevice(hub, identity)
        device.connect()
        assert device.publish("devices/%s/messages/events/%s" % (identity, topic), body)
        device.close()

    table = microagent("messages", "--data", hub.data_dir)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "TIME", "DEVICE", "BYTES", "PROPERTIES", "BODY"]
    assert lines[-1] == "3 messages"
    # aligned: every column starts where its header starts
    starts = [lines[0].index(name) for name in ("TIME", "DEVICE", "BYTES", "PROPERTIES", "BODY")]
    for line in lines[1:4]:
        assert all(line[start - 2:start] == "  " and line[start] != " " for start in starts[:2])
    assert lines[1].endswith("Login[2] SBoM[0]")  # a security message shows as its events
    assert "note=hello world" in lines[2] and "not json at all" in lines[2]

    rows = [json.loads(line) for line in microagent("messages", "--data", hub.data_dir, "--json").stdout.splitlines()]
    assert [r["device"] for r in rows] == ["dev1", "dev2", "dev1"]
    assert rows[0]["body"]["Events"][0] == {"Name": "Login", "Payload": [{}, {}]}
    assert rows[0]["properties"] == {"$.ct": "application/json", "$.ce": "utf-8"}
    assert rows[1]["body"] == "not json\nat all" and rows[2]["body"] == "\ufffd\ufffd"
    assert all(r["time"].endswith("Z") for r in rows)

    only = microagent("messages", "--data", hub.data_dir, "--device", "dev2", "--json").stdout.splitlines()
    assert [json.loads(line)["device"] for line in only] == ["dev2"]


def test_set_desired_values_json_or_string(hub):
    result = microagent("set-desired", "--data", hub.data_dir, "dev1", "n=5", "flag=false", "list=[1,2]",
                        "s=hello world", "gone=null")
    assert result.returncode == 0, result.stderr
    assert hub.twin("dev1")["desired"] == {"n": 5, "flag": False, "list": [1, 2], "s": "hello world",
                                           "$version": 2}

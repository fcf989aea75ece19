"""flash.py against any unix-port process behind a pty, here one started with socat as the docs
show (`socat PTY,link=...,raw,echo=0 EXEC:"micropython -X heapsize=128K",pty,raw,echo=0`)."""
import hashlib
import json
import os

import board_profiles
import firmware_bundle
from board_link import BoardLink
from board_helpers import run_tool

CONNECTION_STRING = "HostName=hub.local;DeviceId=socat-1;SharedAccessKey=a2V5LWZvci1zb2NhdC1ib2FyZA=="


def test_flash_a_unix_port_behind_socat(socat_board, tiny_firmware):
    proc = run_tool("flash.py", "--board", "unix", "--port", socat_board.port, "--json", "--firmware",
                    tiny_firmware, "--connection-string", CONNECTION_STRING)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sum(e["event"] == "verified" for e in events) == 5
    assert any(e["event"] == "log" and e["line"] == "tiny: sum 45 device DeviceId=socat-1" for e in events)
    assert events[-2] == {"event": "started", "line": "microagent: started board=unix"}
    for f in firmware_bundle.build(board_profiles.load("unix"), str(tiny_firmware), CONNECTION_STRING):
        with open(os.path.join(socat_board.flash, f.remote), "rb") as on_board:
            assert on_board.read() == f.data, f.remote


def test_files_and_a_script_over_socat(socat_board, tmp_path):
    payload = bytes(range(256)) * 12
    local = tmp_path / "payload.bin"
    local.write_bytes(payload)
    proc = run_tool("flash.py", "--board", "unix", "--port", socat_board.port, "--json", "--files",
                    "%s:data/payload.bin" % local)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(socat_board.flash, "data", "payload.bin"), "rb") as f:
        assert f.read() == payload
    with BoardLink(socat_board.port, timeout=5) as link:
        link.enter_raw_repl()
        out = link.exec("import hashlib, binascii\n"
                        "print(binascii.hexlify(hashlib.sha256(open('data/payload.bin','rb').read()).digest()))")
    assert out.strip() == b"b'" + hashlib.sha256(payload).hexdigest().encode() + b"'"

"""flash.py's serial path against a genuinely separate tiny board: a BBC micro:bit emulated by
QEMU, running Debian's MicroPython 1.9.2 (no .mpy import, no hashlib, ~9.8 KB heap), its UART on
socket://127.0.0.1:PORT. Files go through the raw REPL and are read back byte for byte."""
import json
import os

from board_link import BoardLink
from conftest import run_tool


def _events(proc):
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_write_a_file_and_read_it_back(qemu_microbit, tmp_path):
    payload = os.urandom(2000)
    local = tmp_path / "smoke.bin"
    local.write_bytes(payload)
    proc = run_tool("flash.py", "--board", "microbit", "--port", qemu_microbit.port, "--json",
                    "--files", "%s:smoke.bin" % local, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = _events(proc)
    probe = next(e for e in events if e["event"] == "probe")
    assert probe["platform"] == "microbit" and probe["version"] == [1, 9, 2]
    assert probe["mpy"] is None and probe["hashlib"] is False
    assert {"event": "verified", "path": "smoke.bin", "method": "read back byte for byte",
            "bytes": 2000} in events
    # A second, independent session reads the file back from the board's flash.
    with BoardLink(qemu_microbit.port, timeout=10) as link:
        link.enter_raw_repl()
        assert link.read("smoke.bin") == payload
        assert b"smoke.bin" in link.exec("import os\nprint(os.listdir())")


def test_full_flash_is_refused_for_a_board_that_cannot_run_the_agent(qemu_microbit):
    proc = run_tool("flash.py", "--board", "microbit", "--port", qemu_microbit.port)
    assert proc.returncode == 2
    assert "board microbit does not run the agent" in proc.stderr and "--files" in proc.stderr


def test_wrong_board_and_no_space(qemu_microbit, tmp_path):
    local = tmp_path / "a.txt"
    local.write_bytes(b"x")
    proc = run_tool("flash.py", "--board", "unix", "--port", qemu_microbit.port, "--files", local)
    assert proc.returncode == 1
    assert "wrong board: profile unix expects sys.platform 'linux'" in proc.stderr
    assert "reports 'microbit' (MicroPython 1.9.2)" in proc.stderr
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40000))  # the micro:bit's filesystem holds about 30 KB
    proc = run_tool("flash.py", "--board", "microbit", "--port", qemu_microbit.port, "--files", big,
                    timeout=90)
    assert proc.returncode == 1
    assert "no space left on the board at %s while writing big.bin" % qemu_microbit.port in proc.stderr
    with BoardLink(qemu_microbit.port, timeout=10) as link:  # the partial file was removed
        link.enter_raw_repl()
        assert b"big.bin" not in link.exec("import os\nprint(os.listdir())")

"""flash.py against the virtual board (the real unix port behind a pty): end to end, and its
clear errors for a wrong board, a wrong arch, a busy port, no raw REPL and a crashing agent."""
import hashlib
import json
import os
import shutil
import stat
import time

import pytest
import serial

import board_profiles
import firmware_bundle
from board_link import BoardLink
from board_helpers import REPO, run_tool

KEY = "c3VwZXItc2VjcmV0LWRldmljZS1rZXktMTIzNDU2Nzg="
CONNECTION_STRING = "HostName=hub.local;DeviceId=board-7;SharedAccessKey=" + KEY


def _events(proc):
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _flash(board, *extra, timeout=120):
    return run_tool("flash.py", "--board", "unix", "--port", board.port, "--json",
                    "--connection-string", CONNECTION_STRING, *extra, timeout=timeout)


def test_dry_run_shows_the_plan_and_never_the_key(tiny_firmware):
    proc = run_tool("flash.py", "--board", "esp32", "--dry-run", "--firmware", tiny_firmware,
                    "--connection-string", CONNECTION_STRING)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    assert KEY not in text and "(secret)" in text and "DeviceId=board-7" in text
    for path in ("/microagent/config.mpy", "/microagent/profile.mpy", "/main.py", "/microagent_board.json",
                 "/microagent_device.json"):
        assert path in text
    assert "nothing written" in text


def test_flash_end_to_end(virtual_board, tiny_firmware):
    proc = _flash(virtual_board, "--firmware", tiny_firmware)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert KEY not in proc.stdout + proc.stderr
    events = _events(proc)
    verified = {e["path"]: e["method"] for e in events if e["event"] == "verified"}
    assert verified == {p: "sha256 on the board" for p in
                        ("microagent/config.mpy", "microagent/profile.mpy", "main.py", "microagent_board.json",
                         "microagent_device.json")}
    # The files on the board's flash are the ones built for it, byte for byte.
    profile = board_profiles.load("unix")
    for f in firmware_bundle.build(profile, str(tiny_firmware), CONNECTION_STRING):
        with open(os.path.join(virtual_board.flash, f.remote), "rb") as on_board:
            assert on_board.read() == f.data, f.remote
    # The flash holds the device key: on the host, only its owner can read it.
    for path in (virtual_board.flash, os.path.join(virtual_board.flash, "microagent_device.json")):
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, oct(os.stat(path).st_mode)
    # main.py ran on the board (started through the REPL: the unix board cannot reset).
    log = [e["line"] for e in events if e["event"] == "log"]
    assert "tiny: sum 45 device DeviceId=board-7" in log
    assert log[-1] == "microagent: started board=unix"
    assert any(e["event"] == "reset" and e["method"] == "repl" for e in events)
    heap = int(next(line for line in log if line.startswith("tiny: heap")).split()[-1])
    assert 0.9 * profile["heap_bytes"] <= heap <= profile["heap_bytes"]  # the profile's heap cap


def test_reflash_interrupts_the_running_agent_and_removes_stale_files(virtual_board, tiny_firmware):
    assert _flash(virtual_board, "--firmware", tiny_firmware).returncode == 0
    stale = os.path.join(virtual_board.flash, "microagent", "old.py")
    with open(stale, "w") as f:
        f.write("raise ImportError\n")
    proc = _flash(virtual_board, "--firmware", tiny_firmware)  # the agent from the first flash runs
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not os.path.exists(stale)
    assert {"event": "removed", "path": "microagent/old.py"} in _events(proc)


def test_run_a_script_through_the_repl(virtual_board):
    with BoardLink(virtual_board.port, timeout=5) as link:
        link.enter_raw_repl()
        assert link.exec("print(sum(i * i for i in range(10)))").strip() == b"285"
        link.write("note.txt", b"written over the raw REPL\n")
        assert link.sha256("note.txt") == (hashlib.sha256(b"written over the raw REPL\n").hexdigest(), 26)
        assert link.read("note.txt") == b"written over the raw REPL\n"
    with open(os.path.join(virtual_board.flash, "note.txt"), "rb") as f:
        assert f.read() == b"written over the raw REPL\n"


def test_firmware_without_main_is_deployed_but_not_started(virtual_board, tiny_firmware):
    os.remove(tiny_firmware / "main.py")
    proc = _flash(virtual_board, "--firmware", tiny_firmware)
    assert proc.returncode == 0, proc.stderr
    assert any(e["event"] == "not_started" for e in _events(proc))
    assert os.path.exists(os.path.join(virtual_board.flash, "microagent", "profile.mpy"))


def test_agent_crash_is_reported(virtual_board, tiny_firmware):
    (tiny_firmware / "main.py").write_text("print('booting')\nraise RuntimeError('no wifi module')\n")
    proc = _flash(virtual_board, "--firmware", tiny_firmware, "--log-seconds", "2")
    assert proc.returncode == 1
    error = _events(proc)[-1]["error"]
    assert "did not print 'microagent: started'" in error and "no wifi module" in error


def test_agent_that_never_starts_is_reported(virtual_board, tiny_firmware):
    (tiny_firmware / "main.py").write_text("import time\nprint('waiting')\ntime.sleep(30)\n")
    proc = _flash(virtual_board, "--firmware", tiny_firmware, "--log-seconds", "1")
    assert proc.returncode == 1
    assert "within 1s (last line: 'waiting')" in _events(proc)[-1]["error"]


def test_wrong_board(virtual_board, tiny_firmware):
    proc = run_tool("flash.py", "--board", "esp32", "--port", virtual_board.port, "--firmware", tiny_firmware)
    assert proc.returncode == 1
    assert ("wrong board: profile esp32 expects sys.platform 'esp32' but the board at %s reports 'linux'"
            % virtual_board.port) in proc.stderr
    assert not os.path.exists(os.path.join(virtual_board.flash, "main.py"))  # nothing written


def test_arch_mismatch(virtual_board, tiny_firmware, tmp_path):
    with BoardLink(virtual_board.port, timeout=5) as link:
        link.enter_raw_repl()
        arch = firmware_bundle.decode_mpy_word(int(link.exec("import sys\nprint(sys.implementation._mpy)")))[2]
    if arch is None:
        pytest.skip("this unix port reports no native arch, so no arch can mismatch")
    boards = tmp_path / "boards"
    shutil.copytree(os.path.join(REPO, "boards"), boards)
    data = json.loads((boards / "unix.json").read_text())
    data["name"], data["mpy"]["arch"] = "unix-mcu", "armv6m" if arch != "armv6m" else "xtensawin"
    (boards / "unix-mcu.json").write_text(json.dumps(data))
    proc = run_tool("flash.py", "--board", "unix-mcu", "--port", virtual_board.port, "--firmware",
                    tiny_firmware, "--boards-dir", boards)
    assert proc.returncode == 1
    assert ".mpy arch mismatch: the board at %s runs native code for %s, profile unix-mcu compiles for %s" \
        % (virtual_board.port, arch, data["mpy"]["arch"]) in proc.stderr


def test_busy_port(virtual_board, tiny_firmware):
    holder = serial.serial_for_url(virtual_board.port, exclusive=True)
    try:
        proc = run_tool("flash.py", "--board", "unix", "--port", virtual_board.port, "--firmware", tiny_firmware)
    finally:
        holder.close()
    assert proc.returncode == 1
    assert "port %s is busy" % virtual_board.port in proc.stderr


def test_no_raw_repl(tmp_path, tiny_firmware):
    """A serial device that is not MicroPython: nothing answers Ctrl-A."""
    master, slave = os.openpty()
    port = os.ttyname(slave)
    try:
        started = time.monotonic()
        proc = run_tool("flash.py", "--board", "unix", "--port", port, "--firmware", tiny_firmware,
                        "--timeout", "1")
        assert time.monotonic() - started < 20
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 1
    assert "no raw REPL on %s: the device did not answer Ctrl-A within 1s" % port in proc.stderr


def test_missing_port():
    proc = run_tool("flash.py", "--board", "unix", "--port", "/dev/ttyNOSUCH0")
    assert proc.returncode == 1
    assert "port /dev/ttyNOSUCH0 does not exist" in proc.stderr


@pytest.mark.parametrize("bad,message", [
    ("HostName=h;DeviceId=d", "missing SharedAccessKey"),
    ("HostName=h;DeviceId=d;SharedAccessKey=not*base64" + KEY[:8], "SharedAccessKey is not valid base64 (value not shown)"),
    ("HostName=h;DeviceId=d;" + KEY.rstrip("="), "part 3 is not NAME=VALUE"),
])
def test_bad_connection_string(bad, message):
    proc = run_tool("flash.py", "--board", "unix", "--dry-run", "--connection-string", bad)
    assert proc.returncode == 2
    assert message in proc.stderr and KEY[:8] not in proc.stderr


def test_connection_string_from_environment_is_used_and_hidden(tiny_firmware):
    env = dict(os.environ, MICROAGENT_CONNECTION_STRING=CONNECTION_STRING)
    proc = run_tool("flash.py", "--board", "unix", "--dry-run", "--json", "--firmware", tiny_firmware, env=env)
    assert proc.returncode == 0 and KEY not in proc.stdout + proc.stderr
    plan = [e for e in _events(proc) if e["event"] == "plan"]
    assert {"path": "microagent_device.json", "sha256": None} .items() <= \
        next(e for e in plan if e["path"] == "microagent_device.json").items()


def test_frozen_flash_writes_entry_points_only_and_clears_the_package(virtual_board, tiny_firmware):
    assert _flash(virtual_board, "--firmware", tiny_firmware).returncode == 0
    package = os.path.join(virtual_board.flash, "microagent")
    assert sorted(os.listdir(package)) == ["config.mpy", "profile.mpy"]
    os.remove(tiny_firmware / "main.py")
    (tiny_firmware / "boot.py").write_text("print('boot')\n")
    proc = _flash(virtual_board, "--firmware", tiny_firmware, "--frozen")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.listdir(package) == []  # a package file would shadow the frozen one
    written = {e["path"] for e in _events(proc) if e["event"] == "verified"}
    assert written == {"boot.py", "microagent_board.json", "microagent_device.json"}


def test_files_mode_leaves_other_files_alone(virtual_board, tiny_firmware, tmp_path):
    assert _flash(virtual_board, "--firmware", tiny_firmware).returncode == 0
    extra = tmp_path / "extra.txt"
    extra.write_text("extra\n")
    proc = run_tool("flash.py", "--board", "unix", "--port", virtual_board.port, "--files",
                    "%s:microagent/extra.txt" % extra)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(os.path.join(virtual_board.flash, "microagent"))) == ["config.mpy", "extra.txt", "profile.mpy"]


def test_space_check_counts_the_files_being_replaced():
    import flash
    files = [firmware_bundle.DeployFile("a.mpy", b"x" * 3000, "a"), firmware_bundle.DeployFile("b.json", b"y" * 1000, "b")]
    flash.check_space({"free": 2000, "sizes": [2500, -1]}, files, "PORT")  # needs 4000 - 2500
    with pytest.raises(flash.FlashError, match="no space left on the board at PORT: the files need 4000 more bytes, 2000 are free"):
        flash.check_space({"free": 2000, "sizes": [-1, -1]}, files, "PORT")
    flash.check_space({"free": None, "sizes": [-1, -1]}, files, "PORT")  # no statvfs: ENOSPC when writing


def test_flash_over_rfc2217(rfc2217_board, tiny_firmware):
    proc = run_tool("flash.py", "--board", "unix", "--port", rfc2217_board.port, "--json", "--firmware",
                    tiny_firmware, "--connection-string", CONNECTION_STRING)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _events(proc)[-2] == {"event": "started", "line": "microagent: started board=unix"}
    with open(os.path.join(rfc2217_board.flash, "microagent_device.json")) as f:
        assert json.load(f) == {"connection_string": CONNECTION_STRING}


def _flash_payload(port, size, tmp_path):
    """Flashes SIZE random bytes as payload.bin through PORT; (payload, completed flash.py)."""
    payload = os.urandom(size)
    local = tmp_path / "payload.bin"
    local.write_bytes(payload)
    return payload, run_tool("flash.py", "--board", "unix", "--port", port, "--json", "--files",
                             "%s:payload.bin" % local)


def _payload_on(board):
    with open(os.path.join(board.flash, "payload.bin"), "rb") as f:
        return f.read()


def test_bytes_lost_on_the_line_are_resent(lossy_link, virtual_board, tmp_path):
    payload, proc = _flash_payload(lossy_link.port, 6000, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lossy_link.dropped  # the line really lost bytes
    resent = [e for e in _events(proc) if e["event"] == "resent"]
    assert resent and resent[0]["commands"] >= 1
    assert _payload_on(virtual_board) == payload


def test_board_that_goes_away_is_reported(virtual_board, tiny_firmware):
    (tiny_firmware / "main.py").write_text("import sys\nprint('bye')\nsys.exit(3)\n")  # ends the unix port
    proc = _flash(virtual_board, "--firmware", tiny_firmware)
    assert proc.returncode == 1
    events = _events(proc)
    assert {"event": "log", "line": "bye"} in events
    assert events[-1]["error"].startswith("lost the connection to %s" % virtual_board.port)
    assert virtual_board.process.wait(timeout=10) == 1  # the virtual board ended with its process


@pytest.mark.parametrize("lossy_link", [
    [b"p='payload.b"],  # the file name: no stray file, the right one opened on the resend
    [b"print(w"],  # the chunk's write call becomes a plain expression: nothing written
    [b".decode(), n"],  # the board's hash answer loses its byte count: a good file looks bad
    [b"h.update("],  # the hash fails (update without its argument): sent again
    [b"print('garbled')\x04"],  # a chunk's end of paste: the raw REPL is entered again
], indirect=True, ids=["file-name", "write-call", "hash-answer", "hash-call", "end-of-paste"])
def test_losses_that_still_parse_are_caught(lossy_link, virtual_board, tmp_path):
    payload, proc = _flash_payload(lossy_link.port, 1000, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(lossy_link.dropped) == 1
    assert [e["commands"] for e in _events(proc) if e["event"] == "resent"] == [1]
    assert _payload_on(virtual_board) == payload
    assert os.listdir(virtual_board.flash) == ["payload.bin"]

"""tools/virtual_board.py itself: the pty it publishes, the heap cap, and the end of the board."""
import json
import os
import subprocess
import sys

import serial

from board_link import BoardLink
from conftest import TOOLS, run_tool


def test_soft_reset_ends_the_board_and_cleans_up(tmp_path):
    link = tmp_path / "board-tty"
    proc = subprocess.Popen([sys.executable, os.path.join(TOOLS, "virtual_board.py"), "--link", str(link)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        assert os.path.realpath(link) == ready["port"] and os.path.isdir(ready["flash"])
        with BoardLink(str(link), timeout=5) as board:
            board.enter_raw_repl()
            heap = int(board.exec("import gc\nprint(gc.mem_free() + gc.mem_alloc())"))
            assert 0.95 * ready["heap_bytes"] <= heap <= ready["heap_bytes"]  # -X heapsize
            assert board.exec("import os\nprint(os.getcwd())").strip() == ready["flash"].encode()
            port = serial.serial_for_url(str(link))
        port.write(b"\x02\x04")  # friendly REPL, then Ctrl-D: the unix port ends
        out, err = proc.communicate(timeout=15)
        port.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert json.loads(out.splitlines()[-1]) == {"ended": 0}, err
    assert not os.path.lexists(link) and not os.path.exists(ready["flash"])


def test_refuses_a_profile_for_another_port():
    proc = run_tool("virtual_board.py", "--board", "esp32")
    assert proc.returncode == 2 and "board esp32 is for the esp32 port" in proc.stderr

"""The 32-bit targets as boards: tools/virtual_board.py starts them with the console on a pty,
the agent is frozen in (the host-only modules are not), the heap is the profile's, and a bad
image is one line naming it."""
import json
import os
import subprocess
import sys

import pytest

from board_helpers import TOOLS
from board_link import BoardLink

import board_profiles


def _start(board, *extra):
    proc = subprocess.Popen([sys.executable, os.path.join(TOOLS, "virtual_board.py"), "--board", board,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        proc.wait(timeout=30)
        return proc, None
    return proc, json.loads(line)


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("board", ["micropython32", "qemu-cortex-m3"])
def test_virtual_board_runs_the_target_with_the_agent_frozen(firmware_targets, board):
    profile = board_profiles.load(board)
    proc, ready = _start(board)
    try:
        assert ready and ready["board"] == board, proc.stderr.read()
        with BoardLink(ready["port"], timeout=15) as link:
            link.enter_raw_repl()
            facts = link.probe(profile["fs_root"], [])
            assert facts["platform"] == profile["platform"]
            assert tuple(facts["version"]) == (1, 28, 0)
            heap = int(link.exec("import gc\nprint(gc.mem_free() + gc.mem_alloc())"))
            assert 0.9 * profile["heap_bytes"] <= heap <= profile["heap_bytes"]
            where = link.exec("import os, sys, microagent.engine as e\ntry:\n os.stat(e.__file__)\n"
                              " s = 'on the filesystem'\nexcept OSError:\n s = 'frozen'\n"
                              "print(e.__file__, s, sys.maxsize)")
            # frozen: imported, yet not on the board's filesystem; 31-bit small ints
            assert where.split() == [b"microagent/engine.py", b"frozen", b"2147483647"]
            missing = link.exec("try:\n import microagent.replay_main\n print('found')\n"
                                "except ImportError:\n print('absent')")
            assert missing.strip() == b"absent"
    finally:
        _stop(proc)


def test_a_bad_image_is_named_in_one_line(firmware_targets, tmp_path):
    bad = tmp_path / "firmware.elf"
    bad.write_bytes(b"not an ELF image")
    proc, ready = _start("qemu-cortex-m3", "--micropython", str(bad))
    try:
        assert ready is None
        err = proc.stderr.read().strip()
    finally:
        _stop(proc)
    assert proc.returncode != 0
    assert err.startswith("virtual_board: the board ended at start:"), err
    assert "\n" not in err

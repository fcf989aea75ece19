"""The agent's heap on the emulated Cortex-M3 (build/qemu-cortex-m3/firmware.elf under QEMU, the
qemu-cortex-m3 profile: ESP32-sized caches and outbox, mbedTLS allocating from the MicroPython
heap): the board set up by tools/virtual_board.py and tools/flash.py --frozen, connected to the
hub emulator over TLS through its UART bridge, its network cache and DNS table full every window.
Shared by tests/boards/test_heap_on_qemu.py and bench/heap32.py."""
import os
import re
import subprocess
import sys
import time

import board32
from agent_helpers import Console, window_reports, write_device_settings

REPO = board32.REPO
TOOLS = os.path.join(REPO, "tools")
IMAGE = os.path.join(REPO, "build", "qemu-cortex-m3", "firmware.elf")
WINDOW_MS = 3000
BALLAST_LINE = re.compile(r"app: heap \d+ ballast (\d+)")

# The emulated board's stand-in datagram radio, for an application's source: its only network
# link (UART1) carries the agent's connection.
RADIO = """
class Radio:
    def sendto(self, data, addr):
        return len(data)

    def close(self):
        pass
"""

# The application of a memory run on the emulated board. Its only network link (UART1) carries
# the agent's connection, so its traffic goes out through a stand-in datagram radio, and its name
# lookups are reported as a resolving modem's would be (the board's getaddrinfo returns names
# unresolved: the host bridge resolves them). Both go through the agent's socket module and entry
# points, as on a board. Every window: as many peers and names as the caches hold (made as it
# goes: the application keeps nothing but its socket, so the heap is the agent's). With a
# CAP, a ballast holds the rest of the heap for the whole run, so the interpreter, the agent and
# the application get only CAP bytes.
FILL_APP = """
import asyncio, gc, socket
from microagent.collectors import netsock

total = gc.mem_alloc() + gc.mem_free()
ballast = bytearray(total - %(cap)d) if %(cap)d else None
""" + RADIO + """

async def main():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, _sock=Radio())
    rounds = 0
    while True:
        if rounds %% 10 == 0:  # often enough to be seen once the console is read
            print('app: heap %%d ballast %%d' %% (total, len(ballast) if ballast else 0))
        rounds += 1
        for i in range(%(peers)d):
            netsock.TRACKER.lookup('peer%%d.example' %% i, 0x0A09, i)
            u.sendto(b'x', ('10.9.0.%%d' %% i, 43000 + i))
        await asyncio.sleep_ms(%(every)d)
"""


def interpreter_heap(image=IMAGE):
    """gc.mem_alloc() after a collection with nothing imported, on a fresh board."""
    from host_sim import targets
    lines = []
    with targets.QemuBoard(image) as board:
        error = board.run(board32.INTERPRETER, lines.append)
    found = [line for line in lines if line.startswith("heap ")]
    if error or not found:
        raise RuntimeError("heap probe on the emulated board failed: %s" % (error or lines[-5:]))
    return int(found[-1].split()[1])


def ballast(lines):
    """The ballast the application held (bytes; 0 without a cap)."""
    for line in lines:
        m = BALLAST_LINE.search(line)
        if m:
            return int(m.group(1))
    raise RuntimeError("the application did not start: %s" % lines[-10:])


def full_windows(lines, size):
    return [w for w in window_reports(lines) if w["connections"] == size]


def run_agent(root, hub, connection_string, profile, image=IMAGE, cap=0, full=3, timeout=300,
              window_ms=WINDOW_MS):
    """Boots the emulated board, flashes the application (FILL_APP), the device settings and the
    frozen agent's files, and reads its console until FULL windows had a full network cache and
    the hub acknowledged messages, a MemoryError, or TIMEOUT seconds; the console lines. CAP
    (bytes, 0: the whole heap): what the application leaves of the heap beside its ballast."""
    size = profile["config"]["NetworkActivity_CacheSize"]
    work = os.path.join(root, "m3")
    os.makedirs(work)
    port_file = os.path.join(work, "port")
    board = subprocess.Popen([sys.executable, os.path.join(TOOLS, "virtual_board.py"), "--board",
                              "qemu-cortex-m3", "--micropython", image, "--port-file", port_file],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 120
        while not os.path.exists(port_file):
            if board.poll() is not None or time.monotonic() > end:
                raise RuntimeError("the emulated board did not start: %s"
                                   % board.stderr.read().decode(errors="replace")[-500:])
            time.sleep(0.1)
        port = open(port_file).read().strip()
        app = os.path.join(work, "app.py")
        with open(app, "w") as f:
            f.write(FILL_APP % {"peers": size, "every": 500, "cap": cap})
        device = os.path.join(work, "device.json")
        write_device_settings(device, connection_string, hub.port, window_ms)
        flash = [sys.executable, os.path.join(TOOLS, "flash.py"), "--board", "qemu-cortex-m3",
                 "--port", port]
        for step in (["--files", app + ":app.py", device + ":microagent_device.json"],
                     ["--frozen", "--ca", hub.ca_der, "--log-seconds", "0.5"]):
            proc = subprocess.run(flash + step, capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError("flash.py %s failed: %s" % (step[0], proc.stderr[-500:]))
        console = Console(port)
        try:
            stop = time.monotonic() + timeout
            while time.monotonic() < stop:
                console.poll()
                found = window_reports(console.lines)
                if (len(full_windows(console.lines, size)) >= full and found[-1]["delivered"]) \
                        or any("MemoryError" in line for line in console.lines):
                    break
        finally:
            console.close()
        return console.lines
    finally:
        board.terminate()
        board.wait(15)

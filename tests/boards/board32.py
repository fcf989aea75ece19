"""A board on the 32-bit MicroPython with the agent frozen (build/micropython32/micropython, the
i386 unix port from `make firmware`; MICROAGENT_MICROPYTHON32 names another build): its folder
(main.py, the profile, the device file, the hub's CA, an application), runs of it, and the heap
figures the agent's budget is made of. Shared by tests/boards/test_heap_budget.py and
bench/heap32.py."""
import json
import os
import re
import shutil
import subprocess
import threading
import time

import board_profiles
import firmware_bundle

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STARTED_HEAP = re.compile(r"microagent: started .* heap=(\d+)")

# The application of a memory run: every window it talks to as many peers as the network cache
# holds and resolves one name per peer, so each window's caches are full; it keeps nothing alive
# but one socket.
FILL_APP = """
import asyncio, socket

async def main():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    while True:
        for i in range(%(peers)d):
            socket.getaddrinfo('localhost', 1)
            u.sendto(b'x', socket.getaddrinfo('127.0.0.1', %(first)d + i)[0][-1])
        await asyncio.sleep_ms(%(every)d)
"""

# Heap probes, run as the board's main script (no agent started).
INTERPRETER = "import gc\ngc.collect()\nprint('heap', gc.mem_alloc())\n"
# What main.py and the agent import (frozen: the bytecode stays in flash; module and function
# objects, class dictionaries and interned names are what lands in the heap).
CODE = INTERPRETER.replace("import gc\n", "import gc\nimport asyncio, socket\n"
                           "from microagent.settings import boot\n"
                           "from microagent import agent, overflow\n"
                           "from microagent.collectors import netsock\n", 1)
# One TLS session to the hub, as the agent opens it: the handshake is driven by writing the first
# byte of a CONNECT (MicroPython's TLS sockets shake hands within the first write), then the
# session's heap is measured while it is open.
TLS = """
import gc
from microagent import mqtt
from microagent.settings import Settings
from microagent.sas import ConnectionString
settings = Settings()
host = ConnectionString(settings.connection_string).connect_host()
ca = settings.ca_der()
gc.collect()
before = gc.mem_alloc()
sock = mqtt.run(mqtt.open_connection(host, settings.port, ca, server_hostname=host))
while not sock.write(b'\\x10'):
    pass
gc.collect()
print('heap', gc.mem_alloc() - before)
sock.close()
"""


# The agent through WINDOWS windows: each window the application resolves a name and talks to
# PEERS peers (a different set each window, so entries are new), then the window closes and the
# periodic collectors run. Without a hub the outbox keeps its newest messages and counts the rest;
# connected (the third argument "hub"), the agent's delivery task publishes them to the hub as
# it does on a board, while the windows close back to back: a flush does not wait for room in
# the outbox (SINK_WAIT_MS 0; the hub acknowledges a few messages a second, 10,000 windows make
# 30,000), so the outbox drops its oldest messages and counts them, as it does without a hub.
# Prints the heap after collection after the first and the last window.
LONG_RUN = """
import asyncio, gc, json, sys, time
from microagent.settings import boot
settings, outbox = boot(print)
from microagent import agent
from microagent.collectors import netsock
windows, peers, connected = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == 'hub'
agent.SINK_WAIT_MS = 0
tracker = netsock.install(settings.board['config']['NetworkActivity_CacheSize'])
import socket
board = agent.Agent(settings, outbox, tracker)
# 10,000 windows of log lines are not what is measured; errors are shown
agent.log = lambda text: print(text) if 'error' in text else None
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
targets = [socket.getaddrinfo('127.0.0.1', 44000 + i)[0][-1] for i in range(4 * peers)]


async def main():
    if connected:
        link = asyncio.create_task(board._deliver())
        start = time.ticks_ms()
        while not board.session.connected():
            if time.ticks_diff(time.ticks_ms(), start) > 30000 or board._link_error:
                raise SystemExit('no connection to the hub: %s' % board._link_error)
            await asyncio.sleep_ms(20)
    first = 0
    for window in range(windows):
        socket.getaddrinfo('localhost', 1)
        for i in range(peers):
            u.sendto(b'x', targets[(window + i) % len(targets)])
        now = time.ticks_ms()
        await board.close_window(now)
        await board.send_periodic(now)
        if window == 0:
            gc.collect()
            first = gc.mem_alloc()
    gc.collect()
    stats = outbox.stats()
    print('heap', json.dumps({'first': first, 'last': gc.mem_alloc(), 'windows': board.windows,
                              'messages': board.messages, 'dropped': stats['dropped'],
                              'queued': stats['queued'], 'delivered': stats['delivered'],
                              'expired': stats['expired'], 'too_large': stats['too_large'],
                              'unconfirmed': stats['unconfirmed'],
                              'connects': board.session.connects}))

asyncio.run(main())
"""


def long_run(binary, flash, heap, windows, peers, connected=False, timeout=900):
    """Runs LONG_RUN on the board (CONNECTED: to the hub its device file names); its figures
    (dict)."""
    path = os.path.join(flash, "long_run.py")
    with open(path, "w") as f:
        f.write(LONG_RUN)
    proc = subprocess.run([binary, "-X", "heapsize=%d" % heap, "long_run.py", str(windows),
                           str(peers), "hub" if connected else "none"], cwd=flash,
                          env=dict(os.environ, MICROPYPATH=".frozen"),
                          capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("heap ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError("long run failed: %s" % (proc.stdout + proc.stderr)[-800:])
    return json.loads(lines[-1][5:])


def micropython32():
    """Path of the frozen i386 MicroPython, or None when it has not been built."""
    path = os.environ.get("MICROAGENT_MICROPYTHON32") or os.path.join(
        REPO, "build", "micropython32", "micropython")
    return path if os.path.exists(path) else None


def board_dir(root, name, profile, app=None, hub=None, port=None, connection_string=None,
              window_ms=2000, code="frozen", files=None):
    """A board folder as flash.py leaves it. CODE "frozen": the agent is in the binary, so only
    main.py and boot.py; "mpy": the agent as .mpy files, which the unix port imports. APP: the
    application's app.py; FILES: more {name: text} to write beside it."""
    flash = os.path.join(root, name)
    os.makedirs(flash)
    unix = board_profiles.load("unix")
    # Only "mpy" needs the package compiled; the entry points are source either way.
    for f in firmware_bundle.firmware_files(unix if code == "mpy" else dict(unix, mpy=None)):
        if code == "mpy" or f.remote in firmware_bundle.ENTRY_POINTS:
            path = os.path.join(flash, f.remote)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(f.data)
    with open(os.path.join(flash, "microagent_board.json"), "w") as f:
        json.dump(profile, f)
    if hub is not None:
        with open(os.path.join(flash, "microagent_device.json"), "w") as f:
            json.dump({"connection_string": connection_string, "port": port or hub.port,
                       "window_ms": window_ms}, f)
        shutil.copy(hub.ca_der, os.path.join(flash, "microagent_ca.der"))
    if app is not None:
        files = dict(files or {}, **{"app.py": app})
    for file_name, text in (files or {}).items():
        with open(os.path.join(flash, file_name), "w") as f:
            f.write(text)
    return flash


def fill_app(profile, every_ms=500):
    peers = profile["config"]["NetworkActivity_CacheSize"]
    return FILL_APP % {"peers": peers, "first": 43000 + os.getpid() % 300 * 64, "every": every_ms}


def probe(binary, flash, heap, source):
    """Runs SOURCE (a heap probe) in the board folder; the number it printed."""
    path = os.path.join(flash, "probe.py")
    with open(path, "w") as f:
        f.write(source)
    proc = subprocess.run([binary, "-X", "heapsize=%d" % heap, "probe.py"], cwd=flash,
                          env=dict(os.environ, MICROPYPATH=".frozen"), capture_output=True,
                          text=True, timeout=60)
    os.remove(path)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("heap ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError("heap probe failed: %s" % (proc.stdout + proc.stderr)[-500:])
    return int(lines[-1].split()[1])


def run_board(binary, flash, heap, until, timeout):
    """Runs main.py with the heap capped at HEAP until UNTIL(lines) is true or TIMEOUT seconds
    passed; the console lines."""
    proc = subprocess.Popen([binary, "-X", "heapsize=%d" % heap, "main.py"], cwd=flash,
                            env=dict(os.environ, MICROPYPATH=".frozen"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []

    def read():
        for raw in proc.stdout:
            lines.append(raw.decode(errors="replace").rstrip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end and proc.poll() is None and not until(lines):
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(5)
    return lines


def started_heap(lines):
    for line in lines:
        m = STARTED_HEAP.search(line)
        if m:
            return int(m.group(1))
    return None

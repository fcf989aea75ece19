"""What the agent costs the application it shares the asyncio loop with, on a 32-bit MicroPython
with the agent frozen (build/micropython32/micropython from `make firmware`, the i386 unix port;
MICROAGENT_MICROPYTHON32 names another build).

The application ticks every 10 ms and records its worst lateness (how much later than 10 ms each
tick came), while a second task sends a datagram to one of 64 peers every tick, so every window
fills the ESP32 profile's network cache and its flush is a full one. Runs, each for
BENCH_LATENCY_SECONDS (default 15), with the ESP32 profile and its heap cap:
- baseline: the same application, the agent not set up (no device file: main.py runs only it);
- normal hub: the local IoT Hub emulator over TLS;
- slow hub: the emulator behind a proxy that holds every chunk it sends for 1 s;
- blackholed hub: a TCP server that accepts and never answers (the TLS handshake never ends).
The target is a worst lateness of at most 50 ms with the agent in every case.

When build/qemu-cortex-m3/firmware.elf exists, the same cases run on the emulated Cortex-M3
(tools/virtual_board.py, the qemu-cortex-m3 profile, the hub reached over its UART bridge), its
baseline being the application alone there; its application has no traffic task, since the
bridge carries one TCP connection, the agent's.

Run: .venv/bin/python -m bench.loop_latency   (`make bench` calls run()).
"""
import os
import re
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, os.path.join(REPO, "tests", "boards"))

import board32  # noqa: E402
import board_m3  # noqa: E402
import board_profiles  # noqa: E402
from agent_helpers import window_reports, write_device_settings  # noqa: E402
from bench.report import progress, table  # noqa: E402
from bench.slow_hubs import Blackhole, SlowHub  # noqa: E402
from hub_emulator.process import HubProcess  # noqa: E402

SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "15"))
WINDOW_MS = 2000
TARGET_MS = 50
PROFILE = "esp32"
APP_LINE = re.compile(r"app: worst (\d+) ms over (\d+) ticks, (\d+) late")

APP = """
import asyncio, socket, time

PEERS = %(peers)d


async def traffic():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    targets = [socket.getaddrinfo('127.0.0.1', %(first)d + i)[0][-1] for i in range(PEERS)]
    i = 0
    while True:
        u.sendto(b'x', targets[i %% PEERS])
        i += 1
        await asyncio.sleep_ms(10)


async def main():
    asyncio.create_task(traffic())
    worst = 0
    ticks = 0
    late = 0
    last = time.ticks_ms()
    while True:
        await asyncio.sleep_ms(10)
        now = time.ticks_ms()
        lateness = time.ticks_diff(now, last) - 10
        last = now
        ticks += 1
        if lateness > worst:
            worst = lateness
        if lateness > %(target)d:
            late += 1
        if ticks %% 100 == 0:
            print('app: worst %%d ms over %%d ticks, %%d late' %% (worst, ticks, late))
"""


def _board(root, name, profile, hub=None, port=None, connection_string=None):
    app = APP % {"peers": profile["config"]["NetworkActivity_CacheSize"],
                 "first": 42000 + os.getpid() % 500 * 64, "target": TARGET_MS}
    return board32.board_dir(root, name, profile, app, hub, port, connection_string, WINDOW_MS)


def _run(binary, flash, heap):
    """Runs the board for SECONDS (whatever it prints); its console lines."""
    return board32.run_board(binary, flash, heap, lambda lines: False, SECONDS)


def _summary(case, lines):
    ticks = [APP_LINE.search(line) for line in lines]
    ticks = [m for m in ticks if m]
    if not ticks:
        raise RuntimeError("%s: the application printed nothing: %s" % (case, lines[-10:]))
    worst, count, late = (int(g) for g in ticks[-1].groups())
    windows = window_reports(lines)
    return {"case": case, "worst_ms": worst, "ticks": count, "late": late,
            "windows": len(windows),
            "connected": sum(1 for line in lines if "hub: connected" in line),
            "delivered": windows[-1]["delivered"] if windows else 0,
            "peak": max((w["peak"] for w in windows), default=0),
            "errors": sum(1 for line in lines if "error:" in line or "Traceback" in line)}


def measure(binary, target):
    profile = board_profiles.load(PROFILE)
    heap = profile["heap_bytes"]
    results = []
    with tempfile.TemporaryDirectory(prefix="loop-latency-") as root:
        hub = HubProcess(os.path.join(root, "hub"), port=0, plain_port=None)
        cs = hub.add_device("latency")
        with hub:
            progress("loop latency on %s: baseline (no agent)" % target)
            results.append(_summary("baseline: application alone",
                                    _run(binary, _board(root, "alone", profile), heap)))
            progress("loop latency on %s: normal hub" % target)
            results.append(_summary("normal hub", _run(
                binary, _board(root, "normal", profile, hub, hub.port, cs), heap)))
            with SlowHub(hub.port, 1.0) as slow:
                progress("loop latency on %s: slow hub (1 s per packet)" % target)
                results.append(_summary("slow hub (1 s per packet)", _run(
                    binary, _board(root, "slow", profile, hub, slow.port, cs), heap)))
            with Blackhole() as hole:
                progress("loop latency on %s: blackholed hub" % target)
                results.append(_summary("blackholed hub", _run(
                    binary, _board(root, "blackhole", profile, hub, hole.port, cs), heap)))
    for r in results:
        r["target"] = target
    return results


# The emulated board's only link (UART1) carries the agent's connection, so the application's
# datagrams go out through a stand-in radio, still through the agent's socket module (as in
# tests/boards/board_m3.py); without the agent (the baseline) straight to the radio.
M3_APP = APP.replace("""async def traffic():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    targets = [socket.getaddrinfo('127.0.0.1', %(first)d + i)[0][-1] for i in range(PEERS)]
""", board_m3.RADIO + """

async def traffic():
    try:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, 0, _sock=Radio())
    except TypeError:
        u = Radio()
    targets = [('10.9.0.%%d' %% i, %(first)d + i) for i in range(PEERS)]
""")
assert M3_APP != APP


def _m3_case(root, name, hub=None, port=None, connection_string=None):
    """One run on the emulated Cortex-M3: tools/virtual_board.py, the application written with
    flash.py --files, then flash.py --frozen (with credentials unless HUB is None, when only the
    application runs); its console for SECONDS."""
    from agent_helpers import Console
    work = os.path.join(root, name)
    os.makedirs(work)
    port_file = os.path.join(work, "port")
    tools = os.path.join(REPO, "tools")
    board = subprocess.Popen([sys.executable, os.path.join(tools, "virtual_board.py"), "--board",
                              "qemu-cortex-m3", "--port-file", port_file],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 120
        while not os.path.exists(port_file):
            if board.poll() is not None or time.monotonic() > end:
                raise RuntimeError("the emulated board did not start")
            time.sleep(0.1)
        serial_port = open(port_file).read().strip()
        app = os.path.join(work, "app.py")
        with open(app, "w") as f:
            f.write(M3_APP % {"peers": board_profiles.load("qemu-cortex-m3")["config"][
                                  "NetworkActivity_CacheSize"],
                              "first": 43000, "target": TARGET_MS})
        files = [app + ":app.py"]
        if hub is not None:
            # The device settings with the bench's window length (flash.py writes none); in the
            # run's private temporary directory, removed with it.
            device = os.path.join(work, "device.json")
            write_device_settings(device, connection_string, port, WINDOW_MS)
            files.append(device + ":microagent_device.json")
        flash = [sys.executable, os.path.join(tools, "flash.py"), "--board", "qemu-cortex-m3",
                 "--port", serial_port]
        subprocess.run(flash + ["--files"] + files, capture_output=True, timeout=200, check=True)
        # Without settings (its RAM disk starts empty) main.py runs the application alone.
        extra = [] if hub is None else ["--ca", hub.ca_der]
        subprocess.run(flash + ["--frozen", "--log-seconds", "0.5"] + extra, capture_output=True,
                       timeout=300)
        console = Console(serial_port)
        stop = time.monotonic() + SECONDS * 2
        while time.monotonic() < stop:
            console.poll()
        console.close()
        return console.lines
    finally:
        board.terminate()
        board.wait(10)


def measure_m3(root):
    hub = HubProcess(os.path.join(root, "hub-m3"), port=0, plain_port=None)
    cs = hub.add_device("latency-m3")
    target = "qemu-cortex-m3 (emulated)"
    results = []
    with hub:
        progress("loop latency on %s: baseline (no agent)" % target)
        results.append(_summary("baseline: application alone", _m3_case(root, "m3-alone")))
        progress("loop latency on %s: normal hub" % target)
        results.append(_summary("normal hub", _m3_case(root, "m3-normal", hub, hub.port, cs)))
        with SlowHub(hub.port, 1.0) as slow:
            progress("loop latency on %s: slow hub (1 s per packet)" % target)
            results.append(_summary("slow hub (1 s per packet)",
                                    _m3_case(root, "m3-slow", hub, slow.port, cs)))
        with Blackhole() as hole:
            progress("loop latency on %s: blackholed hub" % target)
            results.append(_summary("blackholed hub",
                                    _m3_case(root, "m3-blackhole", hub, hole.port, cs)))
    for r in results:
        r["target"] = target
    return results


def run():
    binary = board32.micropython32()
    if binary is None:
        progress("loop latency: build/micropython32/micropython not built (make firmware); skipped")
        return []
    results = measure(binary, "micropython32 (i386, frozen)")
    if os.path.exists(os.path.join(REPO, "build", "qemu-cortex-m3", "firmware.elf")):
        with tempfile.TemporaryDirectory(prefix="loop-latency-m3-") as root:
            results += measure_m3(root)
    base = {}
    for r in results:
        base.setdefault(r["target"], r["worst_ms"])
    table("Application loop lateness with the agent beside it (%s profile, heap %d, windows of "
          "%d ms, %.0f s each, full network cache every window); baseline: the application alone"
          % (PROFILE, board_profiles.load(PROFILE)["heap_bytes"], WINDOW_MS, SECONDS),
          ["target", "case", "worst lateness (ms)", "ticks", "ticks > %d ms" % TARGET_MS,
           "worst / baseline", "windows", "connects", "delivered", "agent heap peak"],
          [[r["target"], r["case"], r["worst_ms"], r["ticks"], r["late"],
            r["worst_ms"] / base[r["target"]] if base[r["target"]] else float(r["worst_ms"]),
            r["windows"],
            r["connected"], r["delivered"], r["peak"]] for r in results])
    return results


if __name__ == "__main__":
    run()

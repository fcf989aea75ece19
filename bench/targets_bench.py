"""The agent's memory on the 32-bit targets `make firmware` builds, against the 64-bit unix port
with the agent loaded from .mpy (what the other benches measure) as the baseline, per target:

  64-bit .mpy      the pip micropython (unix port, x86-64), the agent as .mpy files in the heap
  32-bit .mpy      build/micropython32/micropython, the same .mpy files
  32-bit frozen    build/micropython32/micropython, the agent frozen into the binary
  Cortex-M3 frozen build/qemu-cortex-m3/firmware.elf under QEMU (mps2-an385)

Rows: heap after importing the agent; an engine with a board's caches (16/256/16 entries and a
256-entry DNS table); the live heap at its peak during a full window's flush (bench/
mp_target_bench.py); the whole agent (main.py with the target's profile) idle at start and
connected to the local IoT Hub emulator over TLS (on the Cortex-M3: over UART1 through the
host bridge), from the agent's own heap reports. And µs per cached-key event on each target
against a dict increment on the same target. QEMU runs the Cortex-M3 as fast as the host lets it,
not at a real part's clock: the ratio carries over, the µs do not.

Run: .venv/bin/python -m bench.targets_bench   (`make bench` calls run()).
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(REPO, "bench")
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, os.path.join(REPO, "tests", "boards"))

import board32  # noqa: E402
import board_profiles  # noqa: E402
from bench.report import progress, table  # noqa: E402
from host_sim import targets  # noqa: E402
from host_sim.runtime import compiled_firmware, micropython_binary  # noqa: E402
from hub_emulator.process import HubProcess  # noqa: E402

SCRIPT = os.path.join(HERE, "mp_target_bench.py")
AGENT_SECONDS = 25
# The Azure RTOS security module's network activity entry for IPv6 (issue 20).
RTOS_IPV6_ENTRY_BYTES = 56
WINDOW_MS = 4000
ROWS = (("64-bit .mpy", "unix", "mpy"), ("32-bit .mpy", "micropython32", "mpy"),
        ("32-bit frozen", "micropython32", "frozen"), ("Cortex-M3 frozen", "qemu-cortex-m3", "frozen"))


def _unix_binary(board):
    return micropython_binary() if board == "unix" else targets.binary("micropython32")


def _script_on_unix(board, code):
    path = compiled_firmware() + ":.frozen" if code == "mpy" else ".frozen"
    proc = subprocess.run([_unix_binary(board), "-X", "heapsize=512K", SCRIPT], capture_output=True,
                          text=True, env=dict(os.environ, MICROPYPATH=path), timeout=300)
    return _bench_line(proc.stdout.splitlines(), proc.stderr)


def _script_on_qemu():
    lines = []
    with targets.QemuBoard() as board:
        with open(SCRIPT) as f:
            error = board.run(f.read(), lines.append)
    return _bench_line(lines, error)


def _bench_line(lines, error):
    for line in lines:
        if line.startswith("BENCH "):
            return json.loads(line[len("BENCH "):])
    raise RuntimeError("mp_target_bench.py failed: %s" % (error or lines[-3:]))


def _agent_heaps(lines):
    """(heap at the started line, heap at the first window closed while connected)."""
    idle = connected = None
    online = False
    for line in lines:
        if "microagent: started" in line and "heap=" in line:
            idle = int(line.rsplit("heap=", 1)[1].split()[0])
        if "hub: connected" in line:
            online = True
        if online and line.startswith("microagent: window ") and connected is None:
            words = line.split()
            connected = int(words[words.index("heap") + 1])
    return idle, connected


def _agent_on_unix(board, code, root):
    # One profile for the three unix-port rows (the same caches and outbox as the Cortex-M3's).
    profile = board_profiles.load("micropython32")
    hub = HubProcess(os.path.join(root, "hub"), port=0, plain_port=None)
    connection_string = hub.add_device("bench-" + board)
    with hub:
        flash = board32.board_dir(root, "flash", profile, hub=hub,
                                  connection_string=connection_string, window_ms=WINDOW_MS,
                                  code=code)
        # A generous cap: the 64-bit port needs more than a board's heap for the .mpy code.
        proc = subprocess.Popen([_unix_binary(board), "-X", "heapsize=512K", "main.py"], cwd=flash,
                                env=dict(os.environ, MICROPYPATH=":.frozen:lib"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(line.rstrip() for line in proc.stdout),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + AGENT_SECONDS
        while time.monotonic() < deadline and None in _agent_heaps(list(lines)):
            time.sleep(0.5)
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=5)
    return _agent_heaps(lines)


def _agent_on_qemu(root):
    sys.path.insert(0, os.path.join(REPO, "tests", "boards"))
    from agent_helpers import Console
    hub = HubProcess(os.path.join(root, "hub"), port=0, plain_port=None)
    connection_string = hub.add_device("bench-qemu")
    board = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "virtual_board.py"),
                              "--board", "qemu-cortex-m3"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        port = json.loads(board.stdout.readline())["port"]
        with hub:
            settings = os.path.join(root, "device.json")
            with open(settings, "w") as f:
                json.dump({"connection_string": connection_string, "port": hub.port,
                           "window_ms": WINDOW_MS}, f)
            flash = [sys.executable, os.path.join(REPO, "tools", "flash.py"), "--board",
                     "qemu-cortex-m3", "--port", port, "--json"]
            subprocess.run(flash + ["--files", settings + ":microagent_device.json"], check=True,
                           capture_output=True, timeout=300)
            started = subprocess.run(flash + ["--frozen", "--ca", hub.ca_der, "--log-seconds", "60"],
                                     capture_output=True, text=True, timeout=300)
            lines = [json.loads(line).get("line", "") for line in started.stdout.splitlines()]
            console = Console(port)
            try:
                deadline = time.monotonic() + AGENT_SECONDS
                while time.monotonic() < deadline and None in _agent_heaps(lines + console.lines):
                    console.poll()
            finally:
                console.close()
            return _agent_heaps(lines + console.lines)
    finally:
        board.terminate()
        board.wait(timeout=15)


def measure():
    results = {}
    for label, board, code in ROWS:
        progress("targets bench: %s" % label)
        with tempfile.TemporaryDirectory(prefix="microagent-bench-") as root:
            if board == "qemu-cortex-m3":
                r = _script_on_qemu()
                r["idle"], r["connected"] = _agent_on_qemu(root)
            else:
                r = _script_on_unix(board, code)
                r["idle"], r["connected"] = _agent_on_unix(board, code, root)
        results[label] = r
    return results


def _ratio(value, baseline):
    return value / baseline if value is not None and baseline else ""


def run():
    results = measure()
    base = results["64-bit .mpy"]
    rows = []
    for measure_name, key in (("heap after importing the agent", "imported"),
                              ("engine, caches 16/256/16 + DNS 256", "engine"),
                              ("peak during a full window's flush", "flush_peak"),
                              ("whole agent idle (at start)", "idle"),
                              ("whole agent connected (TLS session)", "connected")):
        for label, _board, _code in ROWS:
            value = results[label][key]
            rows.append([measure_name, label, value if value is not None else "n/a", base[key],
                         "64-bit .mpy", _ratio(value, base[key])])
    table("Agent heap bytes per target (baseline: 64-bit unix port, agent from .mpy)",
          ["measure", "target", "bytes", "baseline", "baseline is", "ratio"], rows)
    table("Heap bytes per cache slot, IPv6 against IPv4 (the same target, the same run; the "
          "Azure RTOS C module: 56 per IPv6 entry, 32 per IPv4 entry)",
          ["target", "IPv6 network slot", "IPv4 network slot", "ratio", "RTOS IPv6 entry",
           "ratio to RTOS", "IPv6 DNS slot", "IPv4 DNS slot"],
          [[label, results[label]["slot6"], results[label]["slot4"],
            results[label]["slot6"] / results[label]["slot4"], RTOS_IPV6_ENTRY_BYTES,
            results[label]["slot6"] / RTOS_IPV6_ENTRY_BYTES, results[label]["dns6"],
            results[label]["dns4"]] for label, _b, _c in ROWS])
    table("µs per cached-key event on each target (baseline: a dict increment, same target, same run)",
          ["target", "µs cached key", "µs dict increment", "ratio"],
          [[label, results[label]["hit_us"], results[label]["dict_us"],
            results[label]["hit_us"] / results[label]["dict_us"]] for label, _b, _c in ROWS])
    return results


if __name__ == "__main__":
    run()

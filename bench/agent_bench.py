"""The whole firmware agent (main.py: settings, outbox, caches, collectors, TLS session) per board
profile that runs it, on the MicroPython unix port as a stand-in for each board: the agent's .mpy
bundle, the board's profile (cache sizes, outbox bounds, message size) and its heap cap
(`-X heapsize`), sending to the local IoT Hub emulator over TLS.

Measured, per profile:
- heap (gc.mem_alloc after a collection, the agent's own peak report) idle: a window without
  traffic; full: a window in which the application fills the network cache (as many distinct
  UDP peers as the profile's NetworkActivity_CacheSize, each resolved by getaddrinfo);
- bytes per window on the wire: the ConnectionCreate message bytes of the full window, against
  the periodic SystemInformation + SBoM bytes of a window as baseline;
- time from process start to the first message stored by the hub, against the time to the
  agent's started line as baseline.

The unix port is 64-bit: objects and the bytecode loaded from .mpy take about twice the room they
take on the 32-bit boards, and there the agent is meant to be frozen into the firmware (code in
flash, not heap). A board whose heap cap is too small on the unix port is run again with a larger
cap to measure its need, and the table says so.

Run: .venv/bin/python -m bench.agent_bench   (the lead's `make bench` calls run()).
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, os.path.join(REPO, "tests", "boards"))

import board32  # noqa: E402
import board_profiles  # noqa: E402
from bench.report import progress, table  # noqa: E402
from host_sim.runtime import micropython_binary  # noqa: E402
from hub_emulator.process import HubProcess  # noqa: E402

WINDOW_MS = 2500
FALLBACK_HEAP = 512 * 1024
WINDOW_PREFIX = "microagent: window "

# Window 1 is quiet; in window 2 the application fills the network cache.
APP = """
import asyncio, socket
async def main():
    await asyncio.sleep_ms(%(wait)d)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for port in range(40000, 40000 + %(peers)d):
        u.sendto(b'x' * 32, socket.getaddrinfo('localhost', port)[0][-1])
    u.close()
    print('app: filled')
    while True:
        await asyncio.sleep_ms(1000)
"""


# Where the peak goes: the code main.py loads (from .mpy here; in flash when frozen) and one
# TLS session (in the MicroPython heap on the unix port; ESP-IDF's heap on an ESP32).
PARTS = """
import gc, json
gc.collect()
base = gc.mem_alloc()
from microagent.settings import Settings
from microagent import agent, mqtt
from microagent.collectors import netsock
gc.collect()
code = gc.mem_alloc() - base
from microagent.sas import ConnectionString
settings = Settings()
host = ConnectionString(settings.connection_string).connect_host()
ca = settings.ca_der()
gc.collect()
before = gc.mem_alloc()
sock = mqtt.run(mqtt.open_connection(host, settings.port, ca, server_hostname=host))
gc.collect()
tls = gc.mem_alloc() - before
sock.close()
print(json.dumps({"code": code, "tls": tls}))
"""


def _board_command(heap_bytes, script):
    """(argv, env) running SCRIPT (in the board's folder, the working directory) on the unix port
    with the board's heap cap and its files first on the import path."""
    return ([micropython_binary(), "-X", "heapsize=%d" % heap_bytes, script],
            dict(os.environ, MICROPYPATH=":.frozen:lib"))


def _heap_parts(flash, heap_bytes):
    """{"code": bytes, "tls": bytes} measured by heap_parts.py on the board."""
    argv, env = _board_command(heap_bytes, "heap_parts.py")
    proc = subprocess.run(argv, cwd=flash, env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError("heap_parts.py failed: %s" % (proc.stdout + proc.stderr)[-300:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_board(flash, heap_bytes, seconds):
    """Runs main.py on the unix port for SECONDS; (start time, [(time, line)])."""
    argv, env = _board_command(heap_bytes, "main.py")
    start = time.time()
    proc = subprocess.Popen(argv, cwd=flash, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    lines = []

    def read():
        for raw in proc.stdout:
            lines.append((time.time(), raw.decode(errors="replace").rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(seconds)
    proc.terminate()
    proc.wait(timeout=10)
    reader.join(timeout=5)
    return start, lines


def _windows(lines):
    found = {}
    for _, line in lines:
        if line.startswith(WINDOW_PREFIX):
            number = int(line[len(WINDOW_PREFIX):].split(":")[0])
            words = line.split()
            found[number] = {"heap": int(words[words.index("heap") + 1]),
                             "peak": int(words[words.index("peak") + 1]),
                             "connections": int(words[words.index("connections,") - 1])}
    return found


def _stamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _measure(profile, root):
    hub = HubProcess(os.path.join(root, "hub-" + profile["name"]), port=0, plain_port=None)
    cs = hub.add_device(profile["name"])
    with hub:
        peers = profile["config"]["NetworkActivity_CacheSize"]
        flash = board32.board_dir(root, profile["name"], profile,
                                  APP % {"wait": WINDOW_MS + 500, "peers": peers}, hub,
                                  connection_string=cs, window_ms=WINDOW_MS, code="mpy",
                                  files={"heap_parts.py": PARTS})
        heap = profile["heap_bytes"]
        start, lines = _run_board(flash, heap, 3 * WINDOW_MS / 1000 + 3)
        fits = any("microagent: started" in line for _, line in lines) and len(_windows(lines)) >= 2
        if not fits:
            heap = FALLBACK_HEAP
            hub.stop()
            hub.start()
            start, lines = _run_board(flash, heap, 3 * WINDOW_MS / 1000 + 3)
        messages = hub.messages(profile["name"])
        parts = _heap_parts(flash, heap)
    windows = _windows(lines)
    started = next((t for t, line in lines if "microagent: started" in line), None)
    if started is None or 1 not in windows or 2 not in windows:
        raise RuntimeError("agent on %s did not run: %s" % (profile["name"],
                                                         [line for _, line in lines][-10:]))
    bodies = [(m, json.loads(m["payload"])) for m in messages]
    connection_bytes = sum(len(m["payload"]) for m, b in bodies
                           if any(e["Name"] == "ConnectionCreate" for e in b["Events"]))
    periodic = [len(m["payload"]) for m, b in bodies
                if b["Events"][0]["Name"] in ("SystemInformation", "SBoM")]
    return {
        "board": profile["name"], "cap": heap, "fits": fits,
        "budget": profile["heap_budget_bytes"],
        "idle": windows[1]["peak"], "full": max(w["peak"] for w in windows.values()),
        "code": parts["code"], "tls": parts["tls"],
        "connections": max(w["connections"] for w in windows.values()),
        "wire_full": connection_bytes, "wire_periodic": sum(periodic[:2]),
        "to_started": started - start,
        "to_first_message": min(_stamp(m["time"]) for m in messages) - start,
    }


def run():
    names = [n for n in board_profiles.names() if board_profiles.load(n)["runs_agent"]]
    results = []
    with tempfile.TemporaryDirectory(prefix="agent-bench-") as root:
        for name in names:
            progress("agent bench: %s" % name)
            results.append(_measure(board_profiles.load(name), root))
    table("Agent heap per board profile, on the 64-bit unix port (stand-in for every board); "
          "baseline: idle window",
          ["board", "heap cap", "runs in cap", "budget", "idle peak", "full-cache peak",
           "ratio full/idle", "full/budget"],
          [[r["board"], r["cap"], "yes" if r["fits"] else "no (measured with 512K)", r["budget"],
            r["idle"], r["full"], r["full"] / r["idle"], r["full"] / r["budget"]]
           for r in results])
    table("Where the full-cache peak goes (64-bit unix port): the code is in flash when the agent "
          "is frozen, the TLS session in ESP-IDF's heap on an ESP32; the rest is what the "
          "budget covers",
          ["board", "full-cache peak", "code (.mpy)", "TLS session", "agent data",
           "budget", "data/budget"],
          [[r["board"], r["full"], r["code"], r["tls"], r["full"] - r["code"] - r["tls"],
            r["budget"], (r["full"] - r["code"] - r["tls"]) / r["budget"]] for r in results])
    table("Bytes per window on the wire; baseline: one SystemInformation + SBoM pair",
          ["board", "cache entries", "ConnectionCreate bytes (full window)",
           "periodic bytes", "ratio"],
          [[r["board"], r["connections"], r["wire_full"], r["wire_periodic"],
            r["wire_full"] / r["wire_periodic"]] for r in results])
    table("Process start to first message stored by the hub (TLS to the local emulator); "
          "baseline: start to 'microagent: started'",
          ["board", "to started (s)", "to first message (s)", "ratio"],
          [[r["board"], r["to_started"], r["to_first_message"],
            r["to_first_message"] / r["to_started"]] for r in results])
    return results


if __name__ == "__main__":
    run()

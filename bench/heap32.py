"""The agent's heap per board profile on the 32-bit MicroPython with the agent frozen
(build/micropython32/micropython from `make firmware`; MICROAGENT_MICROPYTHON32 names another
build), connected to the local IoT Hub emulator over TLS with its caches full every window.

Figures (gc.mem_alloc() after a collection): the interpreter alone (the baseline); the frozen
agent's module objects (code in flash, its function objects and dictionaries in the heap); agent
data idle (started, not yet connected) and connected (TLS session excluded), the TLS session;
the whole agent's peak against the profile's heap_budget_bytes; and the heap after 10,000 windows
against after the first, without a hub and connected to it.

On the emulated Cortex-M3 (build/qemu-cortex-m3/firmware.elf, when built), where mbedTLS takes
its memory from the MicroPython heap: the whole agent's live peak connected over TLS with full
caches every window, against the interpreter alone on the same image (the baseline), the
profile's heap_budget_bytes and the 64 KB the agent is meant to fit in beside its TLS session.

Run: .venv/bin/python -m bench.heap32   (`make bench` calls run()).
"""
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, os.path.join(REPO, "tests", "boards"))

import board32  # noqa: E402
import board_m3  # noqa: E402
import board_profiles  # noqa: E402
from agent_helpers import window_reports  # noqa: E402
from bench.report import progress, table  # noqa: E402
from hub_emulator.process import HubProcess  # noqa: E402

LONG_RUN_WINDOWS = int(os.environ.get("BENCH_LONG_RUN_WINDOWS", "10000"))
M3_TARGET_BYTES = 64 * 1024
LONG_RUN_PEERS = 24  # a window's connections fill more than one 4 KB message


def _full(profile):
    size = profile["config"]["NetworkActivity_CacheSize"]

    def done(lines):
        found = window_reports(lines)
        return sum(1 for w in found if w["connections"] == size) >= 3 and found[-1]["delivered"]
    return done


def measure(binary, name, root):
    profile = board_profiles.load(name)
    heap = profile["heap_bytes"]
    hub = HubProcess(os.path.join(root, "hub-" + name), port=0, plain_port=None)
    cs = hub.add_device(name)
    with hub:
        flash = board32.board_dir(root, name, profile, board32.fill_app(profile), hub,
                                  connection_string=cs)
        interpreter = board32.probe(binary, flash, heap, board32.INTERPRETER)
        code = board32.probe(binary, flash, heap, board32.CODE)
        tls = board32.probe(binary, flash, heap, board32.TLS)
        lines = board32.run_board(binary, flash, heap, _full(profile), 90)
    windows = window_reports(lines)
    started = board32.started_heap(lines)
    if started is None or not windows:
        raise RuntimeError("%s: the agent did not run: %s" % (name, lines[-10:]))
    return {"board": name, "heap": heap, "budget": profile["heap_budget_bytes"],
            "interpreter": interpreter, "code": code - interpreter,
            "idle": started - code, "connected": max(w["heap"] for w in windows) - code - tls,
            "tls": tls, "peak": max(w["peak"] for w in windows) - interpreter}


def measure_m3(root):
    """The whole agent on the emulated Cortex-M3 (qemu-cortex-m3 profile), connected, full caches."""
    profile = board_profiles.load("qemu-cortex-m3")
    interpreter = board_m3.interpreter_heap()
    hub = HubProcess(os.path.join(root, "hub-m3"), port=0, plain_port=None)
    cs = hub.add_device("heap-m3")
    with hub:
        lines = board_m3.run_agent(root, hub, cs, profile)
    full = board_m3.full_windows(lines, profile["config"]["NetworkActivity_CacheSize"])
    if len(full) < 3 or not full[-1]["delivered"]:
        raise RuntimeError("qemu-cortex-m3: the agent did not deliver full windows: %s"
                           % lines[-10:])
    return {"interpreter": interpreter, "window": max(w["heap"] for w in full) - interpreter,
            "peak": max(w["peak"] for w in full) - interpreter,
            "budget": profile["heap_budget_bytes"]}


def _long_runs(binary, root):
    profile = board_profiles.load("esp32")
    hub = HubProcess(os.path.join(root, "hub-long"), port=0, plain_port=None)
    cs = hub.add_device("long")
    runs = []
    with hub:
        for connected in (False, True):
            progress("heap32: %d windows %s (esp32)"
                     % (LONG_RUN_WINDOWS, "connected to the hub" if connected else "without a hub"))
            flash = board32.board_dir(root, "long-%s" % connected, profile, None, hub,
                                      connection_string=cs, window_ms=1)
            runs.append(board32.long_run(binary, flash, profile["heap_bytes"], LONG_RUN_WINDOWS,
                                         LONG_RUN_PEERS, connected=connected))
        received = len(hub.messages("long"))
    runs[1]["received"] = received
    return runs


def run():
    binary = board32.micropython32()
    if binary is None:
        progress("heap32: build/micropython32/micropython not built (make firmware); skipped")
        return []
    names = [n for n in board_profiles.names()
             if board_profiles.load(n)["runs_agent"] and n != "unix"]
    results = []
    with tempfile.TemporaryDirectory(prefix="heap32-") as root:
        for name in names:
            progress("heap32: %s" % name)
            results.append(measure(binary, name, root))
        flat = _long_runs(binary, root)
        m3 = None
        if os.path.exists(board_m3.IMAGE):
            progress("heap32: qemu-cortex-m3 (emulated), connected, full caches")
            m3 = measure_m3(root)
    table("Agent heap on micropython32 (i386, agent frozen, mbedTLS in the MicroPython heap), "
          "connected over TLS, network cache full every window; baseline: the interpreter alone",
          ["board", "interpreter", "agent modules", "agent data idle", "agent data connected",
           "TLS session", "whole agent peak", "heap_budget_bytes", "peak/budget"],
          [[r["board"], r["interpreter"], r["code"], r["idle"], r["connected"], r["tls"],
            r["peak"], r["budget"], r["peak"] / r["budget"]] for r in results])
    table("Heap after collection over %d windows (esp32 profile, %d new peers and a name a "
          "window, periodic collectors every window; connected: published to the hub emulator "
          "over TLS while the windows close back to back); baseline: after the first window"
          % (LONG_RUN_WINDOWS, LONG_RUN_PEERS),
          ["run", "after window 1", "after the last", "difference", "ratio", "messages",
           "dropped by the outbox", "sent, dropped unacknowledged", "acknowledged",
           "stored by the hub"],
          [[name, f["first"], f["last"], f["last"] - f["first"], f["last"] / f["first"],
            f["messages"], f["dropped"], f["unconfirmed"], f["delivered"], f.get("received", "")]
           for name, f in zip(("no hub", "connected"), flat)])
    if m3 is not None:
        table("Whole agent on the emulated Cortex-M3 (qemu-cortex-m3 profile: ESP32-sized caches and "
              "outbox; mbedTLS in the MicroPython heap), connected over TLS through the UART "
              "bridge, network cache and DNS table full every window; baseline: the interpreter "
              "alone on the same image",
              ["interpreter", "agent after a full window", "agent peak", "heap_budget_bytes",
               "peak/budget", "target", "peak/target"],
              [[m3["interpreter"], m3["window"], m3["peak"], m3["budget"],
                m3["peak"] / m3["budget"], M3_TARGET_BYTES, m3["peak"] / M3_TARGET_BYTES]])
    return results, flat, m3


if __name__ == "__main__":
    run()

"""What the flood summary (ConnectionOverflow, docs/spec.md section 4) costs.

Heap: the summary's bytes on micropython32 (i386, agent frozen: 4-byte pointers as on a board)
beside the ESP32 profile's network cache and DNS table, which are the baseline (gc.mem_alloc()
after a collection, around each construction).

Messages: a 600 s window holding a flood of 10x the default cache (2,560 distinct connections)
before, during or after a reverse shell and a miner, through the firmware and the host engine;
the baseline is the same window encoded without the summary.

Run: .venv/bin/python -m bench.flood_bench   (`make bench` calls run()).
"""
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, os.path.join(REPO, "tests", "boards"))
sys.path.insert(0, os.path.join(REPO, "tests", "firmware"))

import board32  # noqa: E402
import board_profiles  # noqa: E402
from bench.report import progress, table  # noqa: E402
from flood_scenarios import FLOODS, ORDERS, lines, window  # noqa: E402
from host_sim.engine import build_host_engine  # noqa: E402
from microagent.engine import build_engine  # noqa: E402
from microagent.overflow import ROWS, ConnectionOverflow  # noqa: E402
from microagent.trace import Replay  # noqa: E402

CACHE = 256
AGENT_ID = "00000000-0000-4000-8000-000000000001"

_HEAP_PROBE = """
import gc
from microagent.cache import DnsTable, NetworkCache
from microagent.overflow import ConnectionOverflow
gc.collect()
a = gc.mem_alloc()
network = NetworkCache(%(size)d)
dns = DnsTable(%(size)d)
gc.collect()
b = gc.mem_alloc()
summary = ConnectionOverflow()
gc.collect()
c = gc.mem_alloc()
print('heap', b - a, c - b)
"""


def heap_on_micropython32(size):
    binary = board32.micropython32()
    if binary is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".py") as script:
        script.write(_HEAP_PROBE % {"size": size})
        script.flush()
        env = dict(os.environ, MICROPYPATH=".frozen")
        done = subprocess.run([binary, "-X", "heapsize=256K", script.name], env=env,
                              capture_output=True, text=True, timeout=120, check=True)
    _, network, summary = done.stdout.split()
    return int(network), int(summary)


class _Off(ConnectionOverflow):
    lost = False  # the baseline: the same window without its summary


def messages(events, engine_name, encoding, summary):
    sent = []

    def sink(buffer, length):
        sent.append(length)

    if engine_name == "firmware":
        engine = build_engine(16, CACHE, 16, 4096, AGENT_ID, sink, lambda text: None, encoding)
    else:
        engine = build_host_engine(CACHE, sink, lambda text: None, AGENT_ID, encoding=encoding)
    if not summary:
        engine.overflow = _Off()
    replay = Replay(engine, 600000)
    for n, line in enumerate(lines(events).splitlines()):
        replay.feed(line + "\n", "flood.jsonl:%d" % (n + 1))
    replay.close_window()
    return len(sent)


def run():
    size = board_profiles.load("esp32")["config"]["NetworkActivity_CacheSize"]
    heap = heap_on_micropython32(size)
    if heap is None:
        progress("flood_bench: build/micropython32/micropython not built (make firmware); "
                 "heap rows skipped")
    else:
        network, summary = heap
        table("Flood summary heap on micropython32 (ESP32 profile: %d-entry network cache); "
              "baseline: the network cache and DNS table alone" % size,
              ["part", "bytes", "ratio"],
              [["network cache + DNS table (%d entries)" % size, network, 1.0],
               ["ConnectionOverflow (%d rows + the rest)" % ROWS, summary, summary / network]])
    rows = []
    for engine_name in ("firmware", "host"):
        for encoding in ("json", "compact"):
            for kind in FLOODS:
                for order in ORDERS:
                    events = window(CACHE, order, kind)
                    base = messages(events, engine_name, encoding, False)
                    flooded = messages(events, engine_name, encoding, True)
                    rows.append(["%s %s, %s %s the attack" % (engine_name, encoding, kind, order),
                                 base, flooded, flooded - base, flooded / base])
    table("Messages of a window with a flood of 10x the cache (%d distinct connections); "
          "baseline: the same window without the summary" % (10 * CACHE),
          ["window", "baseline messages", "with the summary", "extra", "ratio"], rows)
    return rows


if __name__ == "__main__":
    run()

# Runs inside MicroPython on each target (64-bit and 32-bit unix ports, the emulated Cortex-M3):
# heap after importing the agent, an engine with a board's caches (16 process, 256 network,
# 16 login entries, a 256-entry DNS table), the live heap at its peak while a full window is
# flushed (sampled at each finished message; the window's strings included), and µs per
# cached-key event against a dict increment in the same run; heap per slot of the IPv4 and IPv6
# network caches and DNS tables. Prints one JSON line.
import gc
import json
import time

gc.collect()
base = gc.mem_alloc()
from microagent import agent  # noqa: F401  (the whole agent: settings, hub, mqtt, collectors)
from microagent.cache import DnsTable, LoginCache, NetworkCache, ProcessCache
from microagent.encode import MessageEncoder
from microagent.engine import Engine

gc.collect()
imported = gc.mem_alloc() - base

peak = [0]


def sink(buffer, length):
    # Sampled when a message is complete (its buffer full, the caches still held): the live heap.
    gc.collect()
    used = gc.mem_alloc()
    if used > peak[0]:
        peak[0] = used


def warn(text):
    pass


gc.collect()
before = gc.mem_alloc()
engine = Engine(ProcessCache(16), NetworkCache(256), LoginCache(16), DnsTable(256),
                MessageEncoder("00000000-0000-4000-8000-000000000000", sink, 4096), warn)
gc.collect()
engine_bytes = gc.mem_alloc() - before

# A full window: every cache filled with distinct entries (strings made before measuring).
commands = ["/usr/bin/daemon-%d --flag" % i for i in range(16)]
users = ["user%d" % i for i in range(16)]
remotes = ["52.%d.%d.%d" % (i >> 8, i & 255, 7) for i in range(256)]
names = ["host-%d.example.net" % i for i in range(256)]
for i in range(256):
    engine.record_dns(names[i], remotes[i])
for i in range(256):
    engine.record_connection(i, 0, "10.0.0.2", 40000 + i, remotes[i], 443, 100, 200, 2)
for i in range(16):
    engine.record_process(i, commands[i], 0, 100 + i, 1, 0, None, None)
    engine.record_login(i, 0, 200 + i, users[i], "/usr/sbin/sshd", "198.51.100.1")
gc.collect()
peak[0] = gc.mem_alloc()
engine.flush(0, 60000)
flush_peak = peak[0] - base

# µs per cached-key event: the network cache against a dict of counters (same keys, same run).
HITS = 5000
network = NetworkCache(256)
for i in range(256):
    network.record_packed(i, 0, 0x0A00, 2, 1024 + i, 0x5DB8, 0xD822, 443, 10, 20, 2)
start = time.ticks_us()
i = 0
while i < HITS:
    network.record_packed(i, 0, 0x0A00, 2, 1024 + (i & 255), 0x5DB8, 0xD822, 443, 10, 20, 2)
    i += 1
hit_us = time.ticks_diff(time.ticks_us(), start) / HITS
keys = [(0, 0x0A00, 2, 1024 + i, 0x5DB8, 0xD822, 443) for i in range(256)]
counters = {}
for k in keys:
    counters[k] = [0, 0, 0]
start = time.ticks_us()
i = 0
while i < HITS:
    entry = counters[keys[i & 255]]
    entry[0] += 1
    entry[1] += 10
    entry[2] += 20
    i += 1
dict_us = time.ticks_diff(time.ticks_us(), start) / HITS

# Heap per slot of the IPv4 and IPv6 network caches and DNS tables: 256 slots less 1, over 255.
from microagent.cache6 import DnsTable6, NetworkCache6  # noqa: E402  (after the figures above)


def _slot_bytes(cls):
    sizes = []
    for capacity in (1, 256):
        gc.collect()
        start = gc.mem_alloc()
        cache = cls(capacity)
        gc.collect()
        sizes.append(gc.mem_alloc() - start)
        del cache
    return (sizes[1] - sizes[0]) / 255


slots = {"slot4": _slot_bytes(NetworkCache), "slot6": _slot_bytes(NetworkCache6),
         "dns4": _slot_bytes(DnsTable), "dns6": _slot_bytes(DnsTable6)}

print("BENCH " + json.dumps(dict(slots, imported=imported, engine=engine_bytes,
                                 flush_peak=flush_peak, hit_us=hit_us, dict_us=dict_us)))

# Run inside MicroPython with a capped heap: builds the engine with a 256-entry network cache,
# fills it, then records 10,000 hits and prints the heap figures as one JSON line.
import gc
import json
import sys

from microagent.cache import DnsTable, LoginCache, NetworkCache, ProcessCache
from microagent.encode import MessageEncoder
from microagent.engine import Engine

gc.collect()
start = gc.mem_alloc()
capacity = int(sys.argv[1]) if len(sys.argv) > 1 else 256


def sink(buffer, length):
    pass


def warn(text):
    pass


# The message buffer first, as the agent allocates it: the largest block needs contiguous room.
encoder = MessageEncoder("00000000-0000-4000-8000-000000000000", sink, 4096)
engine = Engine(ProcessCache(16), NetworkCache(capacity), LoginCache(16), DnsTable(capacity),
                encoder, warn)
gc.collect()
engine_bytes = gc.mem_alloc() - start
network = engine.network
i = 0
while i < capacity:
    network.record_packed(i, 0, 0x0A00, 2, 1024 + i, 0x5DB8, 0xD822, 443, 10, 20, 2)
    i += 1
engine.record_dns("example.com", "93.184.216.34")
engine.record_process(0, "/bin/sh -c poll", 0, 10, 1, 1, None, None)
gc.collect()
before = gc.mem_alloc()
i = 0
while i < 10000:
    network.record_packed(5, 0, 0x0A00, 2, 1024 + (i & 127), 0x5DB8, 0xD822, 443, 1, 1, 2)
    engine.record_connection(7, 0, "10.0.0.2", 1030, "93.184.216.34", 443, 1, 1, 2)
    engine.record_process(9, "/bin/sh -c poll", 0, 11, 1, 1, None, None)
    engine.record_dns("example.com", "93.184.216.34")
    i += 1
after = gc.mem_alloc()
gc.collect()
print(json.dumps({"engine_bytes": engine_bytes, "hit_alloc_delta": after - before,
                  "full": network.count, "dropped": network.dropped,
                  "hits": network.hits[5], "free": gc.mem_free()}))

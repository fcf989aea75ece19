# Runs inside MicroPython: heap per cache slot and time per recorded event, against a plain
# dict counter in the same run. Prints one JSON object.
import gc
import json
import time

from microagent.cache import DnsTable, NetworkCache

CAPACITY = 256
HITS = 20000


def heap_of(build):
    gc.collect()
    before = gc.mem_alloc()
    thing = build()
    gc.collect()
    return gc.mem_alloc() - before, thing


def per_event_us(start, count):
    return time.ticks_diff(time.ticks_us(), start) / count


network_bytes, cache = heap_of(lambda: NetworkCache(CAPACITY))
dns_bytes, _ = heap_of(lambda: DnsTable(CAPACITY))
keys = [(0, 0x0A00, 2, 1024 + i, 0x5DB8, 0xD822, 443) for i in range(CAPACITY)]


def fill_dict():
    d = {}
    for k in keys:
        d[k] = [0, 0, 0, 0]
    return d


dict_bytes, counter = heap_of(fill_dict)

# new keys: insert CAPACITY distinct flows into an empty cache
start = time.ticks_us()
i = 0
while i < CAPACITY:
    cache.record_packed(i, 0, 0x0A00, 2, 1024 + i, 0x5DB8, 0xD822, 443, 10, 20, 2)
    i += 1
new_us = per_event_us(start, CAPACITY)

d = {}
start = time.ticks_us()
for k in keys:
    d[k] = [1, 10, 20, 0]
dict_new_us = per_event_us(start, CAPACITY)

# cached keys: hits spread over the whole cache
start = time.ticks_us()
i = 0
while i < HITS:
    cache.record_packed(i, 0, 0x0A00, 2, 1024 + (i & 255), 0x5DB8, 0xD822, 443, 10, 20, 2)
    i += 1
hit_us = per_event_us(start, HITS)

start = time.ticks_us()
i = 0
while i < HITS:
    entry = d[keys[i & 255]]
    entry[0] += 1
    entry[1] += 10
    entry[2] += 20
    i += 1
dict_hit_us = per_event_us(start, HITS)

start = time.ticks_us()
i = 0
while i < HITS:
    cache.record(i, 0, "10.0.0.2", 1024 + (i & 255), "93.184.216.34", 443, 10, 20, 2)
    i += 1
string_hit_us = per_event_us(start, HITS)

print(json.dumps({
    "capacity": CAPACITY, "network_bytes": network_bytes, "dns_bytes": dns_bytes,
    "dict_bytes": dict_bytes, "new_us": new_us, "dict_new_us": dict_new_us,
    "hit_us": hit_us, "dict_hit_us": dict_hit_us, "string_hit_us": string_hit_us}))

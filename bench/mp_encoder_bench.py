# Runs inside MicroPython: the JSON and compact encoders writing the same window of distinct
# connections (ARGV: count, distinct remote hosts): µs per item, heap each encoder holds, bytes
# allocated while writing, and bytes written. Prints one JSON object.
import gc
import json
import sys
import time

from microagent import events
from microagent.engine import make_encoder

AGENT = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"
WINDOW_START_MS = 1767225600000
COUNT = int(sys.argv[1])
HOSTS = int(sys.argv[2])

# The rows the engine would hand over (built before measuring: they are the cache's, not the
# encoder's): addresses as the cache formats them, host names from the DNS table.
remotes = ["52.%d.%d.%d" % (h >> 8 & 255, h & 255, 7) for h in range(HOSTS)]
names = ["svc%d.example.net" % h for h in range(HOSTS)]
rows = []
for i in range(COUNT):
    h = (i * 7919) % HOSTS
    remote_port = (443, 8883, 53)[h % 3]
    rows.append([i * 60, "192.168.1.10", remotes[h], 32768 + i, remote_port,
                 "TCP" if h % 3 < 2 else "UDP",
                 events.application_protocol(32768 + i, remote_port, 2), (1200 * i) % 70000,
                 (300 * i) % 9000, 1 + i % 4, 1 + h % 2, {"host_name": names[h]}, "out"])


def measure(encoding):
    sent = [0, 0]

    def sink(buffer, length):
        sent[0] += 1
        sent[1] += length

    gc.collect()
    before = gc.mem_alloc()
    encoder = make_encoder(encoding, AGENT, sink, 4096)
    gc.collect()
    held = gc.mem_alloc() - before
    encoder.begin(WINDOW_START_MS + 60000, WINDOW_START_MS)
    encoder.event(events.CONNECTION, "Triggered", "Security")
    gc.collect()
    gc.disable()
    start_heap = gc.mem_alloc()
    start = time.ticks_us()
    fields = events.CONNECTION_FIELDS
    for r in rows:
        encoder.item(fields, r)
    encoder.finish()
    elapsed = time.ticks_diff(time.ticks_us(), start)
    allocated = gc.mem_alloc() - start_heap
    gc.enable()
    return {"us_per_item": elapsed / COUNT, "held": held, "allocated_per_item": allocated / COUNT,
            "messages": sent[0], "bytes": sent[1]}


# The compact module loads on first use: load it before measuring either encoder.
make_encoder("compact", AGENT, lambda b, n: None, 4096)
result = {"json": measure("json"), "compact": measure("compact"), "count": COUNT,
          "hosts": HOSTS, "bits": 64 if sys.maxsize > 2 ** 32 else 32}
print(json.dumps(result))

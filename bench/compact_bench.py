"""The compact encoding against JSON: bytes per aggregated IPv4 connection (the Azure RTOS
module sent 36) and IPv6 connection, IoT Hub blocks per simulated busy-gateway day against one message per raw
event, the encoders on MicroPython (µs and heap per item), and decoding throughput on CPython."""
import json
import os
import subprocess
import sys
import time

from bench.report import progress, table
from host_sim.cost import measure
from host_sim.engine import build_host_engine
from host_sim.replay import replay_host
from host_sim.runtime import compiled_firmware, micropython_binary
from microagent.decode import body_of_line, decode_compact
from microagent.encode import COMPACT, JSON

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tools"))
import build_firmware  # noqa: E402
BUSY = os.path.join(REPO, "tests", "fixtures", "traces", "busy-gateway.jsonl")
RTOS_WIRE_BYTES_PER_IPV4_CONNECTION = 36  # Azure RTOS security module, FlatBuffers (anchors.md)
RTOS_RAM_BYTES_PER_IPV6_CONNECTION = 56  # its IPv6 cache entry in C (issue 20)
AGENT = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"
CONNECTIONS = 1000
WINDOW_MS = 60000
T0 = 1767225600000


def _window_of_connections(encoding, hosts, named, ipv6=False):
    """Bytes of the messages one 60 s window of CONNECTIONS distinct outbound IPv4 (IPV6: IPv6)
    connections makes through the host engine (4 KB messages): a gateway's device talking to
    HOSTS remote services (with their DNS names when NAMED), each connection from its own
    ephemeral port."""
    sizes = []
    engine = build_host_engine(CONNECTIONS + 24, lambda b, n: sizes.append(n), lambda w: None,
                               AGENT, 4096, encoding=encoding)
    local = "2001:db8:0:1::10" if ipv6 else "192.168.1.10"
    for i in range(CONNECTIONS):
        h = (i * 7919) % hosts
        if ipv6:
            remote = "2600:1f18:%x:%x::%x" % (h >> 8 & 255, h & 255, 7 + h % 200)
        else:
            remote = "52.%d.%d.%d" % (h >> 8 & 255, h & 255, 7 + h % 200)
        if named:
            engine.record_dns("svc%d.example.net" % h, remote)
        engine.record_connection(i * 59, h % 3 // 2, local, 32768 + i, remote,
                                 (443, 8883, 53)[h % 3], (1200 * i) % 70000, (300 * i) % 9000,
                                 2, 1)
    engine.flush(T0, T0 + WINDOW_MS)
    return sum(sizes), len(sizes)


def _bytes_per_connection():
    rows = []
    for hosts, named, label in ((CONNECTIONS, False, "1,000 distinct remote hosts"),
                                (50, False, "50 remote services"),
                                (50, True, "50 remote services + DNS host names")):
        compact, messages = _window_of_connections(COMPACT, hosts, named)
        as_json, json_messages = _window_of_connections(JSON, hosts, named)
        per = compact / float(CONNECTIONS)
        rows.append(["%s: compact (%d messages)" % (label, messages), per,
                     RTOS_WIRE_BYTES_PER_IPV4_CONNECTION, "Azure RTOS module",
                     per / RTOS_WIRE_BYTES_PER_IPV4_CONNECTION])
        rows.append(["%s: compact" % label, per, as_json / float(CONNECTIONS),
                     "JSON (%d messages)" % json_messages, compact / float(as_json)])
    table("Bytes per aggregated IPv4 connection: one window of %d distinct connections, 4 KB "
          "messages, whole messages counted" % CONNECTIONS,
          ["case", "bytes", "baseline", "baseline is", "ratio"], rows)
    return rows


def _bytes_per_ipv6_connection():
    rows = []
    for hosts, named, label in ((CONNECTIONS, False, "1,000 distinct remote hosts"),
                                (50, True, "50 remote services + DNS host names")):
        compact, messages = _window_of_connections(COMPACT, hosts, named, ipv6=True)
        as_json, json_messages = _window_of_connections(JSON, hosts, named, ipv6=True)
        compact4, _ = _window_of_connections(COMPACT, hosts, named)
        per = compact / float(CONNECTIONS)
        rows.append(["%s: compact IPv6 (%d messages)" % (label, messages), per,
                     as_json / float(CONNECTIONS), "JSON IPv6 (%d messages)" % json_messages,
                     compact / float(as_json)])
        rows.append(["%s: compact IPv6" % label, per, compact4 / float(CONNECTIONS),
                     "compact IPv4, same hosts", compact / float(compact4)])
        rows.append(["%s: compact IPv6" % label, per, RTOS_RAM_BYTES_PER_IPV6_CONNECTION,
                     "Azure RTOS module's RAM per IPv6 entry",
                     per / RTOS_RAM_BYTES_PER_IPV6_CONNECTION])
    table("Bytes per aggregated IPv6 connection: one window of %d distinct connections, 4 KB "
          "messages, whole messages counted" % CONNECTIONS,
          ["case", "bytes", "baseline", "baseline is", "ratio"], rows)
    return rows


def _busy_gateway_day():
    rows, per_day = measure(BUSY, WINDOW_MS)
    raw = rows[0]
    out = []
    for row in rows[1:]:
        out.append([row["sender"], row["blocks_per_day"], raw["blocks_per_day"],
                    raw["blocks_per_day"] / row["blocks_per_day"], row["free_blocks_per_day"],
                    raw["free_blocks_per_day"] / row["free_blocks_per_day"],
                    row["devices_per_S1"]])
    table("IoT Hub blocks per simulated busy-gateway day (trace x%.0f), against one message per "
          "raw event" % per_day,
          ["sender", "4 KB blocks/day", "baseline: raw events", "fewer ×",
           "0.5 KB blocks/day", "fewer × (0.5 KB)", "devices per S1 unit"], out)
    return out


def _micropython_encoders():
    runtimes = [micropython_binary()]
    try:
        runtimes.append(build_firmware.ensure(["micropython32"])["micropython32"])
    except build_firmware.BuildError as exc:
        progress("no 32-bit figures: %s" % exc)
    return [_encoders_on(binary) for binary in runtimes]


def _encoders_on(binary):
    env = dict(os.environ, MICROPYPATH=compiled_firmware())
    out = subprocess.run([binary, "-X", "heapsize=32M",
                          os.path.join(HERE, "mp_encoder_bench.py"), str(CONNECTIONS), "50"],
                         env=env, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    c, j = r["compact"], r["json"]
    rows = [["µs per connection item", c["us_per_item"], j["us_per_item"],
             c["us_per_item"] / j["us_per_item"]],
            ["heap the encoder holds (bytes)", c["held"], j["held"], c["held"] / float(j["held"])],
            ["heap allocated per item (bytes)", c["allocated_per_item"], j["allocated_per_item"],
             c["allocated_per_item"] / j["allocated_per_item"]],
            ["bytes written per item", c["bytes"] / float(r["count"]),
             j["bytes"] / float(r["count"]), c["bytes"] / float(j["bytes"])]]
    table("Encoders on the MicroPython unix port (%d-bit%s), %d connection items to 50 services"
          % (r["bits"], ", v1.28.0 built here" if r["bits"] == 32 else "", r["count"]),
          ["measure", "compact", "baseline: JSON encoder", "ratio"],
          rows)
    return rows


def _decoding():
    lines = {JSON: [], COMPACT: []}
    for encoding in lines:
        replay_host(BUSY, WINDOW_MS, None, lines[encoding].append, lambda w: None, agent=AGENT,
                    encoding=encoding)
    compact = [body_of_line(x) for x in lines[COMPACT]]
    as_json = [x.encode() for x in lines[JSON]]
    items = 0
    start = time.perf_counter()
    for body in compact:
        for event in decode_compact(body)["Events"]:
            items += len(event["Payload"])
    compact_s = time.perf_counter() - start
    json_items = 0
    start = time.perf_counter()
    for body in as_json:
        for event in json.loads(body)["Events"]:
            json_items += len(event["Payload"])
    json_s = time.perf_counter() - start
    assert items == json_items
    rows = [["items/s", items / compact_s, json_items / json_s, "json.loads of the JSON messages",
             (items / compact_s) / (json_items / json_s)],
            ["MB/s of message bodies", sum(map(len, compact)) / compact_s / 1e6,
             sum(map(len, as_json)) / json_s / 1e6, "json.loads of the JSON messages",
             (sum(map(len, compact)) / compact_s) / (sum(map(len, as_json)) / json_s)]]
    table("Decoding the busy gateway's compact messages to JSON messages on CPython (%d items)"
          % items, ["measure", "decode (cbor2 + mapping)", "baseline", "baseline is", "ratio"],
          rows)
    return rows


def run():
    progress("compact encoding: a window of %d distinct connections" % CONNECTIONS)
    _bytes_per_connection()
    _bytes_per_ipv6_connection()
    progress("compact encoding: a simulated busy-gateway day")
    _busy_gateway_day()
    progress("compact encoding: the encoders on MicroPython")
    _micropython_encoders()
    progress("compact encoding: decoding on CPython")
    _decoding()

"""Firmware caches on the real MicroPython unix port: heap per slot and time per event."""
import json
import os
import subprocess

from bench.report import table
from host_sim.runtime import compiled_firmware, micropython_binary

HERE = os.path.dirname(os.path.abspath(__file__))
RTOS_BYTES_PER_IPV4_CONNECTION = 52  # Azure RTOS security module (anchors.md)


def run():
    env = dict(os.environ, MICROPYPATH=compiled_firmware() + ":.frozen")
    out = subprocess.run([micropython_binary(), "-X", "heapsize=256K",
                          os.path.join(HERE, "mp_cache_bench.py")], env=env, check=True,
                         capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    n = r["capacity"]
    table("Firmware network cache, MicroPython unix port (64-bit), %d entries" % n,
          ["measure", "microagent", "baseline", "baseline is", "ratio"], [
              ["heap bytes per slot", r["network_bytes"] / n, RTOS_BYTES_PER_IPV4_CONNECTION,
               "Azure RTOS C module", r["network_bytes"] / n / RTOS_BYTES_PER_IPV4_CONNECTION],
              ["heap bytes per slot", r["network_bytes"] / n, r["dict_bytes"] / n,
               "dict counter", r["network_bytes"] / r["dict_bytes"]],
              ["DNS table bytes per slot", r["dns_bytes"] / n, "", "", ""],
              ["µs per event, cached key", r["hit_us"], r["dict_hit_us"], "dict counter",
               r["hit_us"] / r["dict_hit_us"]],
              ["µs per event, cached key, dotted strings", r["string_hit_us"], r["dict_hit_us"],
               "dict counter", r["string_hit_us"] / r["dict_hit_us"]],
              ["µs per event, new key", r["new_us"], r["dict_new_us"], "dict counter",
               r["new_us"] / r["dict_new_us"]],
          ])
    return r

"""Heap cost of the firmware transport on the MicroPython unix port (64-bit), firmware loaded as
.mpy (as on a board without frozen modules).

For each mode it finds the smallest `-X heapsize` with which a whole session works (connect,
one QoS 1 publish acknowledged) — this covers the TLS handshake's peak — and the live heap
(gc.mem_alloc) at each stage with room to spare. Baseline: the same client over plain TCP, in the
same run; the ratio column is TLS (or hub) over that baseline.

Run: .venv/bin/python -m bench.transport_heap   (the lead's `make bench` calls run()).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

from mosquitto_broker import Mosquitto  # noqa: E402
from host_sim.runtime import compiled_firmware, micropython_binary  # noqa: E402

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "transport_heap_probe.py")
KEY_B64 = "c2VjcmV0LWRldmljZS1rZXktZm9yLXRlc3RzLTAxMjM0NTY3ODk="
NOW = 1800000000


def _probe(mpy_dir, heap_kb, args, massif_out=None):
    """Runs the probe (under valgrind massif when MASSIF_OUT is given); its JSON result or None."""
    env = dict(os.environ, MICROPYPATH=mpy_dir + ":.frozen")
    cmd = [micropython_binary(), "-X", "heapsize=%dK" % heap_kb, PROBE] + [str(a) for a in args]
    if massif_out:
        # The `micropython` command runs the VM inside this Python process (a C extension), so
        # massif sees every C allocation: the GC heap block, CPython's, and mbedTLS's.
        cmd = ["valgrind", "--tool=massif", "--massif-out-file=" + massif_out, sys.executable] + cmd
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return None
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result if result["ok"] else None


def _massif_peak(path):
    with open(path) as f:
        return max(int(line.split("=")[1]) for line in f if line.startswith("mem_heap_B="))


def _smallest_heap(mpy_dir, args, low=8, high=512):
    """Smallest heap (KB) for which the probe succeeds, by bisection (success is monotonic)."""
    if _probe(mpy_dir, high, args) is None:
        return None
    while low < high:
        mid = (low + high) // 2
        if _probe(mpy_dir, mid, args) is None:
            low = mid + 1
        else:
            high = mid
    return low


def measure():
    from microagent import hub
    from microagent.sas import ConnectionString, sas_token
    with tempfile.TemporaryDirectory() as work:
        mpy_dir = compiled_firmware()
        cs_text = ("HostName=bench.example;DeviceId=dev;SharedAccessKey=%s;GatewayHostName=127.0.0.1"
                   % KEY_B64)
        cs = ConnectionString(cs_text)
        broker_dir = os.path.join(work, "broker")
        os.mkdir(broker_dir)
        broker = Mosquitto(broker_dir, {"bench": "bench-pass",
                                        hub.username(cs): sas_token(cs.resource(), cs.key, NOW + 3600)},
                           plain=True).start()
        try:
            ca = broker.certs["ca.pem"]
            modes = (("MQTT + SAS, plain TCP (baseline)", ["plain", broker.plain_port, ca, "bench", "bench-pass"]),
                     ("MQTT + SAS over TLS", ["tls", broker.port, ca, "bench", "bench-pass"]),
                     ("HubSession (TLS, twin, config, outbox)",
                      ["hub", broker.port, ca, "-", "-", cs_text, NOW]),
                     ("engine (256 net entries) + HubSession",
                      ["agent", broker.port, ca, "-", "-", cs_text, NOW]))
            rows = []
            for name, args in modes:
                live = _probe(mpy_dir, 512, args)
                stages = dict(live["stages"]) if live else {}
                if shutil.which("valgrind"):
                    massif = os.path.join(work, "massif.out")
                    if _probe(mpy_dir, 512, args, massif):
                        stages["c_heap_peak"] = _massif_peak(massif)
                rows.append((name, _smallest_heap(mpy_dir, args), stages))
            return rows
        finally:
            broker.stop()


def run():
    rows = measure()
    base = rows[0][1]
    base_c = rows[0][2].get("c_heap_peak")
    print("Firmware transport heap on the MicroPython unix port (64-bit), firmware as .mpy")
    print("%-40s %11s %6s %10s %12s %10s %14s %8s" % (
        "mode", "min heap KB", "ratio", "imports B", "connected B", "acked B", "C heap +KB", "64K fits"))
    for name, smallest, stages in rows:
        ratio = "%.2f" % (smallest / base) if smallest and base else "-"
        c_extra = ("%.1f" % ((stages["c_heap_peak"] - base_c) / 1024)
                   if base_c and stages.get("c_heap_peak") else "n/a")
        print("%-40s %11s %6s %10s %12s %10s %14s %8s" % (
            name, smallest if smallest else "> 512", ratio,
            stages.get("hub imports", stages.get("imports", "-")),
            stages.get("connected", "-"), stages.get("message acked", "-"), c_extra,
            "yes" if smallest and smallest <= 64 else "no"))
    print("min heap: smallest -X heapsize for connect + one acknowledged QoS 1 publish (bisection).\n"
          "B: gc.mem_alloc() live bytes (heap 512K). C heap +KB: peak of C allocations outside the\n"
          "MicroPython heap above the baseline (valgrind massif) -- on this unix build mbedTLS calls\n"
          "libc calloc, so the TLS handshake's own memory shows here, not in the GC heap; on boards\n"
          "whose mbedTLS allocates from the GC heap it adds to min heap.")


if __name__ == "__main__":
    run()

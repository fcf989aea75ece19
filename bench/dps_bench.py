"""DPS registration against a plain SAS connect, on the 32-bit MicroPython with the agent frozen
(build/micropython32/micropython from `make firmware`), both against the local emulator in the
same run: the firmware core's DPS client (microagent.dps: TLS connect, CONNECT, subscribe,
register, wait the retry-after the DPS asks for, poll, assignment) and, as the baseline, a
device's TLS connect and SAS CONNECT to the hub (what a device with a connection string does
instead).

Figures, median of RUNS each: wall time from opening the connection to the answer; the heap's
peak above the level before (gc.mem_alloc() sampled at every yield of the asyncio loop); what is
left after a collection once done (0: nothing stays). The modules are imported before the
baseline level is taken; `import` is what loading microagent.dps itself costs (frozen: its
function objects and dictionary). On micropython32 mbedTLS allocates from libc, so the TLS
session is outside these heap figures (heap32's TLS row has it).

Run: .venv/bin/python -m bench.dps_bench   (`make bench` calls run()).
"""
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
sys.path.insert(0, os.path.join(REPO, "tests", "boards"))

import board32  # noqa: E402
from bench.report import progress, table  # noqa: E402
from hub_emulator import dps as dps_service  # noqa: E402
from hub_emulator.process import HubProcess  # noqa: E402

RUNS = int(os.environ.get("BENCH_DPS_RUNS", "5"))
HEAP = 256 * 1024

# Runs inside micropython32: argv MODE PORT CA_DER; the DPS settings or connection string on stdin.
SCRIPT = """
import asyncio, gc, sys
from microagent import mqtt
from microagent.clock import ticks_diff, ticks_ms
from microagent.hub import username
from microagent.sas import ConnectionString, sas_token, unix_time
mode, port, ca_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
secret = sys.stdin.readline().strip()
with open(ca_path, "rb") as f:
    ca = f.read()
gc.collect()
before_import = gc.mem_alloc()
if mode == "dps":
    from microagent import dps
gc.collect()
imported = gc.mem_alloc() - before_import
peak = [0]

async def sample():
    while True:
        used = gc.mem_alloc()
        if used > peak[0]:
            peak[0] = used
        await asyncio.sleep_ms(0)

async def job():
    if mode == "dps":
        return await dps.provision(dps.DpsSettings(secret), ca)
    cs = ConnectionString(secret)
    client = mqtt.MQTTClient(cs.client_id(), user=username(cs), buf_size=1024)
    sock = await mqtt.open_connection(cs.connect_host(), port, ca, server_hostname=cs.connect_host())
    await client.connect(sock, sas_token(cs.resource(), cs.key, unix_time() + 3600))
    client.disconnect()

async def main():
    gc.collect()
    base = peak[0] = gc.mem_alloc()
    sampler = asyncio.create_task(sample())
    started = ticks_ms()
    await job()
    elapsed = ticks_diff(ticks_ms(), started)
    sampler.cancel()
    gc.collect()
    print("result", elapsed, peak[0] - base, gc.mem_alloc() - base, imported)

asyncio.run(main())
"""


def _one(binary, folder, mode, port, ca_der, secret):
    proc = subprocess.run([binary, "-X", "heapsize=%d" % HEAP, "dps_probe.py", mode, str(port), ca_der],
                          cwd=folder, env=dict(os.environ, MICROPYPATH=".frozen"), input=secret + "\n",
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("result ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError("dps_bench %s failed: %s" % (mode, (proc.stdout + proc.stderr)[-400:]))
    return [int(v) for v in lines[-1].split()[1:]]


def measure(binary, root):
    hub = HubProcess(os.path.join(root, "hub"), port=0, plain_port=None, extra_args=["--dps-port", "0"])
    hub.db.execute("UPDATE settings SET value = 'localhost' WHERE name = 'hub_name'")
    scope, group_key = dps_service.add_group(hub.db, "bench")
    connection_string = hub.add_device("sas-bench")
    folder = os.path.join(root, "board")
    os.makedirs(folder)
    with open(os.path.join(folder, "dps_probe.py"), "w") as f:
        f.write(SCRIPT)
    results = {"sas": [], "dps": []}
    with hub:
        dps_text = "GlobalEndpoint=127.0.0.1:%d;IdScope=%s;RegistrationId=dps-bench;SymmetricKey=%s" % (
            hub.state["dps_port"], scope, dps_service.derived_key(group_key, "dps-bench"))
        for _ in range(RUNS):
            results["sas"].append(_one(binary, folder, "sas", hub.port, hub.ca_der, connection_string))
            results["dps"].append(_one(binary, folder, "dps", hub.port, hub.ca_der, dps_text))
    return {mode: [statistics.median(run[i] for run in runs) for i in range(4)]
            for mode, runs in results.items()}


def run():
    binary = board32.micropython32()
    if binary is None:
        progress("dps_bench: build/micropython32/micropython not built (make firmware); skipped")
        return []
    progress("dps_bench: %d DPS registrations and %d SAS connects on micropython32" % (RUNS, RUNS))
    with tempfile.TemporaryDirectory(prefix="dps-bench-") as root:
        figures = measure(binary, root)
    sas, dps = figures["sas"], figures["dps"]
    def ratio(value, base):
        return "%.2f" % (value / base) if base else "-"
    rows = [
        ["SAS connect to the hub (baseline)", sas[0], sas[1], sas[2], "-", "1.00", "1.00"],
        ["DPS registration (retry-after 1 s)", dps[0], dps[1], dps[2], dps[3],
         ratio(dps[0], sas[0]), ratio(dps[1], sas[1])],
        ["DPS registration less the retry-after wait", dps[0] - 1000, dps[1], dps[2], dps[3],
         ratio(dps[0] - 1000, sas[0]), ratio(dps[1], sas[1])],
    ]
    table("DPS registration against a SAS connect, micropython32 (median of %d; TLS in libc's heap)"
          % RUNS, ["what", "ms", "peak heap B", "left after B", "import B", "time ratio",
                   "heap ratio"], rows)
    return rows


if __name__ == "__main__":
    run()

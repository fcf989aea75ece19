"""DPS registration against a plain SAS connect, on the 32-bit MicroPython with the agent frozen
(build/micropython32/micropython from `make firmware`) and on the emulated Cortex-M3
(build/qemu-cortex-m3/firmware.elf under QEMU, a fresh board per run, its TCP connections carried
over UART1 to tools/uart_bridge.py as its agent's are), all against the local emulator in the
same run: the firmware core's DPS client (microagent.dps: TLS connect, CONNECT, subscribe,
register, wait the retry-after the DPS asks for, poll, assignment) and, as the baseline, a
device's TLS connect and SAS CONNECT to the hub (what a device with a connection string does
instead).

Figures, median of RUNS each: wall time from opening the connection to the answer; the heap's
peak above the level before (gc.mem_alloc() sampled at every yield of the asyncio loop); what is
left after a collection once done (0: nothing stays). The modules are imported before the
baseline level is taken; `import` is what loading microagent.dps itself costs (frozen: its
function objects and dictionary). On micropython32 mbedTLS allocates from libc, so the TLS
session is outside these heap figures (heap32's TLS row has it); on the Cortex-M3 it allocates
from the MicroPython heap, so there the peak includes the TLS session (and, in both columns, the
garbage not collected yet: gc.mem_alloc() counts it until a collection).

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
import board_m3  # noqa: E402
from bench.report import progress, table  # noqa: E402
from hub_emulator import dps as dps_service  # noqa: E402
from hub_emulator.process import HubProcess  # noqa: E402

RUNS = int(os.environ.get("BENCH_DPS_RUNS", "5"))
HEAP = 256 * 1024

IMPORTS = """
import asyncio, gc, sys
from microagent import mqtt
from microagent.clock import ticks_diff, ticks_ms
from microagent.hub import username
from microagent.sas import ConnectionString, sas_token, unix_time
"""
# micropython32: argv MODE PORT CA_DER; the DPS settings or connection string on stdin.
UNIX_INPUTS = """
mode, port, ca_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
secret = sys.stdin.readline().strip()
with open(ca_path, "rb") as f:
    ca = f.read()
"""
# the emulated Cortex-M3 (raw REPL, no argv or stdin): the same, as literals of a throwaway hub's
M3_INPUTS = """
mode, port, ca, secret = %r, %d, %r, %r
"""
MEASURE = """
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
SCRIPT = IMPORTS + UNIX_INPUTS + MEASURE


def _one(binary, folder, mode, port, ca_der, secret):
    proc = subprocess.run([binary, "-X", "heapsize=%d" % HEAP, "dps_probe.py", mode, str(port), ca_der],
                          cwd=folder, env=dict(os.environ, MICROPYPATH=".frozen"), input=secret + "\n",
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("result ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError("dps_bench %s failed: %s" % (mode, (proc.stdout + proc.stderr)[-400:]))
    return [int(v) for v in lines[-1].split()[1:]]


def _one_m3(image, mode, port, ca_der, secret):
    """One run on a fresh emulated Cortex-M3, its TCP connections bridged to the host over UART1
    (tools/uart_bridge.py, as the board's agent reaches the hub)."""
    from host_sim import targets
    from uart_bridge import UartBridge
    with open(ca_der, "rb") as f:
        ca = f.read()
    bridge = UartBridge()
    lines = []
    try:
        with targets.QemuBoard(image, extra=bridge.qemu_args()) as board:
            error = board.run(IMPORTS + M3_INPUTS % (mode, port, ca, secret) + MEASURE, lines.append)
    finally:
        bridge.stop()
    found = [line for line in lines if line.startswith("result ")]
    if error or not found:
        raise RuntimeError("dps_bench %s on the Cortex-M3 failed: %s" % (mode, error or lines[-5:]))
    return [int(v) for v in found[-1].split()[1:]]


def measure(binary, root, m3_image=None):
    """{"sas": medians, "dps": medians} on micropython32 (BINARY), and when M3_IMAGE is given
    {"m3-sas": ..., "m3-dps": ...} on the emulated Cortex-M3 too, against the same hub."""
    hub = HubProcess(os.path.join(root, "hub"), port=0, plain_port=None, extra_args=["--dps-port", "0"])
    hub.db.execute("UPDATE settings SET value = 'localhost' WHERE name = 'hub_name'")
    scope, group_key = dps_service.add_group(hub.db, "bench")
    connection_string = hub.add_device("sas-bench")
    folder = os.path.join(root, "board")
    os.makedirs(folder)
    with open(os.path.join(folder, "dps_probe.py"), "w") as f:
        f.write(SCRIPT)
    results = {"sas": [], "dps": []}
    if m3_image:
        results.update({"m3-sas": [], "m3-dps": []})
    with hub:
        def dps_text(registration_id):
            return "GlobalEndpoint=127.0.0.1:%d;IdScope=%s;RegistrationId=%s;SymmetricKey=%s" % (
                hub.state["dps_port"], scope, registration_id,
                dps_service.derived_key(group_key, registration_id))
        for _ in range(RUNS):
            results["sas"].append(_one(binary, folder, "sas", hub.port, hub.ca_der, connection_string))
            results["dps"].append(_one(binary, folder, "dps", hub.port, hub.ca_der,
                                       dps_text("dps-bench")))
            if m3_image:
                results["m3-sas"].append(_one_m3(m3_image, "sas", hub.port, hub.ca_der,
                                                 connection_string))
                results["m3-dps"].append(_one_m3(m3_image, "dps", hub.port, hub.ca_der,
                                                 dps_text("dps-bench-m3")))
    return {mode: [statistics.median(run[i] for run in runs) for i in range(4)]
            for mode, runs in results.items()}


def _rows(figures, sas_key, dps_key):
    sas, dps = figures[sas_key], figures[dps_key]

    def ratio(value, base):
        return "%.2f" % (value / base) if base else "-"
    return [
        ["SAS connect to the hub (baseline)", sas[0], sas[1], sas[2], "-", "1.00", "1.00"],
        ["DPS registration (retry-after 1 s)", dps[0], dps[1], dps[2], dps[3],
         ratio(dps[0], sas[0]), ratio(dps[1], sas[1])],
        ["DPS registration less the retry-after wait", dps[0] - 1000, dps[1], dps[2], dps[3],
         ratio(dps[0] - 1000, sas[0]), ratio(dps[1], sas[1])],
    ]


COLUMNS = ["what", "ms", "peak heap B", "left after B", "import B", "time ratio", "heap ratio"]


def run():
    binary = board32.micropython32()
    if binary is None:
        progress("dps_bench: build/micropython32/micropython not built (make firmware); skipped")
        return []
    m3_image = board_m3.IMAGE if os.path.exists(board_m3.IMAGE) else None
    progress("dps_bench: %d DPS registrations and %d SAS connects on micropython32%s"
             % (RUNS, RUNS, " and the emulated Cortex-M3" if m3_image else
                " (no build/qemu-cortex-m3/firmware.elf: make firmware; Cortex-M3 rows skipped)"))
    with tempfile.TemporaryDirectory(prefix="dps-bench-") as root:
        figures = measure(binary, root, m3_image)
    rows = _rows(figures, "sas", "dps")
    table("DPS registration against a SAS connect, micropython32 (median of %d; TLS in libc's heap)"
          % RUNS, COLUMNS, rows)
    if m3_image:
        m3_rows = _rows(figures, "m3-sas", "m3-dps")
        table("DPS registration against a SAS connect, emulated Cortex-M3 (QEMU mps2-an385, median "
              "of %d; mbedTLS allocates from the MicroPython heap, so TLS is in these figures)"
              % RUNS, COLUMNS, m3_rows)
        rows += [["Cortex-M3: " + row[0]] + row[1:] for row in m3_rows]
    return rows


if __name__ == "__main__":
    run()

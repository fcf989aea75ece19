"""The cloud store (issue 19): the console over the store against the console over the hub's
messages, what the store costs per device and day, and ingest speed into SQLite and PostgreSQL.

Data: a day of gateway traffic (tracegen.busy at 2 events/s, host engine, 7200 s windows: the
same 445 messages a day as the busy sample, made in a tenth of the time) per device.
- Console start (process start to its URL line) and page times: `console --store` over stores of
  100 and 10,000 devices, against the baseline of `console --data` over the hub store of the
  same 100 devices' messages, in the same run. The store fleets copy the rows of devices really
  ingested under new ids (hourly aggregates and device rows; alerts for one device in ten, as
  if one in ten were attacked), without the learned state, which the console never reads.
- Store bytes per device-day: a day of INGEST_DEVICES devices ingested, the store's size less an
  empty store's, divided by the devices.
- Ingest: messages/s of `Ingest` (rules, aggregates, a commit every 1000 messages) into SQLite
  and into PostgreSQL (Debian's server, started here), against reading and decoding alone.
Run alone: `.venv/bin/python -m bench.store_bench`.
"""
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from bench.alerts_bench import fill_store
from bench.report import progress, table
from host_sim import tracegen
from host_sim.cloud.alerts.messages import read_message
from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.alerts.sources import HubStore
from host_sim.cloud.ingest import Ingest
from host_sim.cloud.store import open_store
from host_sim.cloud.store.base import Batch
from host_sim.replay import replay_host

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
sys.path.insert(0, os.path.join(REPO, "tests", "cloud"))
from pg_server import PostgresServer  # noqa: E402

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
WINDOW_MS = 7200 * 1000
INGEST_DEVICES = 20
COMMIT_EVERY = 1000


def day_of_gateway(workdir):
    trace = os.path.join(workdir, "day.jsonl")
    tracegen.write(tracegen.busy(duration=86400.0, rate=2.0), trace)
    bodies = []
    replay_host(trace, WINDOW_MS, None, lambda m: bodies.append(m.encode()), lambda line: None)
    os.remove(trace)
    return bodies


def _decode_only(data_dir):
    """(messages, wall s, CPU s) of reading and decoding every stored message."""
    source = HubStore(data_dir)
    started, cpu = time.perf_counter(), time.process_time()
    count = 0
    for stored in source.read_new():
        read_message(stored.body, stored.properties)
        count += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    source.close()
    return count, elapsed, cpu


def _ingest(data_dir, dsn):
    """(messages, wall s, CPU s, bytes added) of the hub store ingested into DSN's store."""
    store = open_store(dsn)
    empty = store.size_bytes()
    ingest = Ingest(store, load_rules())
    source = HubStore(data_dir)
    started, cpu = time.perf_counter(), time.process_time()
    for count, stored in enumerate(source.read_new(), 1):
        ingest.feed("hub", 0, stored.id, stored)
        if count % COMMIT_EVERY == 0:
            ingest.commit()
    ingest.check_silence()
    ingest.commit()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    source.close()
    size = store.size_bytes() - empty
    ingest.close()
    return ingest.messages, elapsed, cpu, size


def _fleet(source_dsn, dsn, devices):
    """A store of DEVICES devices, each a copy (new id) of a device ingested into SOURCE_DSN."""
    source = open_store(source_dsn)
    originals = [row["device"] for row in source.devices_page(limit=10 ** 6)]
    rows = {d: source.device_row(d) for d in originals}
    hourly = {d: source.hourly(device=d) for d in originals}
    alerts = {d: source.alerts(device_id=d) for d in originals}
    source.close()
    store = open_store(dsn)
    batch = Batch()
    for i in range(devices):
        original = originals[i % len(originals)]
        device = "gw-%05d" % i
        row = rows[original]
        batch.devices.append((device, "hub", i % 32, row["last_time"], row["last_arrival"],
                              row["messages"], row["skipped"], None))
        batch.hourly += [(device,) + tuple(h) for h in hourly[original]]
        if i % 10 == 0:
            for a in alerts[original]:
                batch.alerts.append(_Copied(device, a))
        if len(batch.hourly) > 50000:
            store.write(batch)
            batch = Batch()
    store.write(batch)
    store.close()


class _Copied:
    """An alert row under another device id, shaped as Batch.alerts wants (an Alert's fields)."""

    def __init__(self, device, row):
        self.device, self.rule, self.key = device, row["rule"], row["key"]
        self.severity, self.title, self.what_to_do = row["severity"], row["title"], row["what_to_do"]
        self.first, self.last, self.count, self.evidence = (row["first"], row["last"],
                                                            row["count"], row["evidence"])


def _get(url, status=200):
    """(seconds, bytes) of one GET of URL, which must answer STATUS."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=600) as response:
            code, size = response.status, len(response.read())
    except urllib.error.HTTPError as exc:
        code, size = exc.code, len(exc.read())
    if code != status:
        raise RuntimeError("console answered %s with %d, not %d" % (url, code, status))
    return time.perf_counter() - started, size


def _console(args, pages, env=None):
    """(start s, {name: (first s, warm s, bytes)}) of `microagent console ARGS` and PAGES
    ({name: path}), plus its 404 page as "404"."""
    started = time.perf_counter()
    proc = subprocess.Popen([MICROAGENT, "console", "--port", "0"] + args,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    try:
        line = proc.stdout.readline()
        start = time.perf_counter() - started
        if not line.startswith("console: http://"):
            raise RuntimeError("console did not start: %r" % line)
        base = line.split()[1].rstrip("/")
        times = {}
        for name, path in list(pages.items()) + [("404", "/nothing")]:
            status = 404 if name == "404" else 200
            first = _get(base + path, status)
            warm = min(_get(base + path, status) for _ in range(3))
            times[name] = (first[0], warm[0], first[1])
        return start, times
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def run():
    with tempfile.TemporaryDirectory(prefix="store-bench-") as workdir:
        server = None
        if os.geteuid() == 0:
            server = PostgresServer()
        else:
            progress("store bench: PostgreSQL rows skipped (needs root: runs Debian's server as "
                     "the postgres user)")
        try:
            if server is not None:
                server.start()
            _measure(workdir, server)
        finally:
            if server is not None:
                server.stop()


def _measure(workdir, server):
    progress("store bench: a day of gateway traffic (host engine)")
    bodies = day_of_gateway(workdir)
    hub100 = os.path.join(workdir, "hub100")
    hub_ingest = os.path.join(workdir, "hub-ingest")
    fill_store(hub100, bodies, 100)
    fill_store(hub_ingest, bodies, INGEST_DEVICES)
    progress("store bench: ingest")
    decoded = min((_decode_only(hub_ingest) for _ in range(2)), key=lambda r: r[2])
    sqlite_dsn = os.path.join(workdir, "ingested.db")
    runs = [("SQLite", _ingest(hub_ingest, sqlite_dsn))]
    if server is not None:
        runs.append(("PostgreSQL", _ingest(hub_ingest, server.create_database("ingested"))))
    count = decoded[0]
    rows = [["read + decode only (baseline)", count, decoded[1], decoded[2],
             count / decoded[2], 1.0, "-"]]
    for name, (messages, wall, cpu, size) in runs:
        assert messages == count, (messages, count)
        rows.append(["ingest into %s (rules, aggregates, commit every %d)" % (name, COMMIT_EVERY),
                     messages, wall, cpu, messages / wall, 1.0, round(size / INGEST_DEVICES)])
    table("Ingest into the cloud store: %d devices x a day (%d messages); messages/s is wall "
          "time (the server's work counts), x baseline: decode-only messages/s over it"
          % (INGEST_DEVICES, count),
          ["pass", "messages", "wall s", "CPU s", "messages/s", "x baseline",
           "store bytes per device-day"], _ratio(rows))
    progress("store bench: console fleets of 100 and 10,000 devices")
    fleets = []
    for devices in (100, 10000):
        path = os.path.join(workdir, "fleet-%d.db" % devices)
        _fleet(sqlite_dsn, path, devices)
        fleets.append(("SQLite", devices, ["--store", path], None))
        if server is not None:
            dsn = server.create_database("fleet_%d" % devices)
            _fleet(sqlite_dsn, dsn, devices)
            # the DSN and its password from the environment, as a user would give them
            fleets.append(("PostgreSQL", devices, ["--store"],
                           dict(os.environ, MICROAGENT_STORE=dsn)))

    def store_pages(devices):
        return {"fleet page": "/", "fleet page, middle": "/?after=gw-%05d" % (devices // 2),
                "alerts page": "/alerts", "Medium alerts page": "/alerts?severity=Medium",
                "device page": "/device?id=gw-00010"}
    progress("store bench: console --data over 100 devices' messages (baseline), then --store")
    data_start, data_pages = _console(["--data", hub100],
                                      {"fleet page": "/", "device page": "/device?id=gw-010"})
    results = [("--data, 100 devices (baseline)", data_start, data_pages)]
    for backend, devices, args, env in fleets:
        start, times = _console(args, store_pages(devices), env)
        results.append(("--store %s, {:,} devices".format(devices) % backend, start, times))
    rows = []
    for name, start, times in results:
        rows.append([name, "start", start, "-", "-", start / data_start])
        for page, (first, warm, size) in times.items():
            rows.append([name, page, first, warm, size / 1024.0,
                         warm / data_pages[page][1] if page in data_pages else "-"])
    table("Console start (process start to its URL) and pages (first and warm GET); x "
          "baseline: against console --data over the same 100 devices' messages",
          ["console", "step", "first / wall s", "warm s", "KiB", "x baseline"], rows)


def _ratio(rows):
    """The x baseline column as decode-only messages/s over each row's messages/s."""
    base = rows[0][4]
    return [row[:5] + [base / row[4] if i else 1.0] + row[6:] for i, row in enumerate(rows)]


if __name__ == "__main__":
    run()

"""Event Hubs' Kafka surface: messages per second through `alerts --kafka` members (the
default rules into a SQLite store, exactly once) with 1 and 2 consumer processes, against the
baseline of reading and decoding the same records alone (one consumer, no rules, no store).

Data: DEVICES devices x HOURS of busy-gateway traffic (host engine, windows of 7200 s), as
records in the shape `hub serve --route` writes (hub_emulator.route.record), interleaved as a
hub would receive them, in 4-partition topics of librdkafka's mock cluster (a process of its
own). Each pass reads a topic of its own holding the same records, written in one Kafka
transaction that is committed only once the pass's members have joined their group and hold
every partition: all the records are there before any is read, and neither the group's join
nor a rebalance is counted. Each member is a process running run_member; the pass's wall time
runs from the first record any member feeds to the last. The mock cluster keeps about 1,100
records of 4 KB per partition, so the data stays under that.
Run alone: `.venv/bin/python -m bench.kafka_bench [DEVICES [HOURS]]`.
"""
import datetime
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

from bench.report import progress, table
from host_sim import tracegen
from host_sim.replay import replay_host

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTITIONS = [0, 1, 2, 3]
WINDOW_MS = 7200 * 1000


def _bodies(hours):
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as workdir:
        trace = os.path.join(workdir, "busy.jsonl")
        tracegen.write(tracegen.busy(duration=hours * 3600.0), trace)
        bodies = []
        replay_host(trace, WINDOW_MS, None, lambda m: bodies.append(m.encode()), lambda line: None)
    return bodies


class _Fill:
    """The records of one pass, written into TOPIC in a transaction left open until commit()."""

    def __init__(self, bootstrap, topic, bodies, devices):
        from confluent_kafka import Producer
        from hub_emulator.route import record
        self.bootstrap, self.topic = bootstrap, topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0,
                                  "transactional.id": "fill-" + topic})
        self.producer.init_transactions(30)
        self.producer.begin_transaction()
        self.next = {}      # partition -> the offset after its last record
        start = datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc)
        self.count = 0
        for i, body in enumerate(bodies):
            stamp = (start + datetime.timedelta(seconds=i)).isoformat(timespec="milliseconds")
            for d in range(devices):
                key, value, headers, ms = record({
                    "device": "gw-%03d" % d, "time": stamp.replace("+00:00", "Z"),
                    "payload": body, "properties": {"$.ct": "application/json", "$.ce": "utf-8"}})
                while True:
                    try:
                        self.producer.produce(topic, value=value, key=key, headers=headers,
                                              timestamp=ms, on_delivery=self._delivered)
                        break
                    except BufferError:
                        self.producer.poll(0.1)
                self.count += 1
        if self.producer.flush(120):
            raise RuntimeError("the mock cluster did not take every record")

    def _delivered(self, error, message):
        if error is not None:
            raise RuntimeError("a record was not written: %s" % error.str())
        self.next[message.partition()] = max(self.next.get(message.partition(), 0),
                                             message.offset() + 1)

    def commit(self):
        from confluent_kafka import Consumer, TopicPartition
        self.producer.commit_transaction(60)
        probe = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "probe", "log_level": 0})
        low = [probe.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)[0]
               for p in PARTITIONS]
        probe.close()
        if any(low):
            raise RuntimeError("the mock cluster dropped the oldest records (low watermarks %s): "
                               "fewer devices or hours" % low)


def _baseline(bootstrap, fill):
    """(wall s, CPU s) of reading and decoding the records of FILL (committed): what any
    consumer must pay."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from host_sim.cloud.alerts.messages import read_message
    from host_sim.cloud.kafka_records import read_record
    fill.commit()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "baseline", "log_level": 0,
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(fill.topic, p, OFFSET_BEGINNING) for p in PARTITIONS])
    read = 0
    started = cpu = None
    while read < fill.count:
        for message in consumer.consume(1000, 1.0):
            if started is None:
                started, cpu = time.perf_counter(), time.process_time()
            if message.error() is None:
                stored = read_record(message.key(), message.value(), message.headers(),
                                     message.timestamp(), message.offset())
                read_message(stored.body, stored.properties)
                read += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    consumer.close()
    return elapsed, cpu


def _positions(dsn, topic):
    from host_sim.cloud.store import open_store
    store = open_store(dsn)
    try:
        return store.positions("kafka:" + topic, PARTITIONS)
    finally:
        store.close()


def _lines(child, into):
    for line in child.stdout:
        into.put((child.pid, line.strip()))


def _members(bootstrap, processes, workdir, fill):
    """(wall s, CPU s, messages fed) of PROCESSES members of a new group (and a new store)
    reading FILL's topic, which is committed once they hold every partition between them."""
    dsn = os.path.join(workdir, fill.topic + ".db")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO, os.path.join(REPO, "tools")] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    children = [subprocess.Popen([sys.executable, "-m", "bench.kafka_bench", "member", bootstrap,
                                  fill.topic, dsn], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
                for _ in range(processes)]
    lines = queue.Queue()
    for child in children:
        threading.Thread(target=_lines, args=(child, lines), daemon=True).start()
    held = {child.pid: set() for child in children}
    stats = {}
    try:
        deadline = time.monotonic() + 120
        while not (all(held.values()) and sum(len(h) for h in held.values()) == len(PARTITIONS)):
            pid, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            verb, _, numbers = line.partition(" ")
            if verb in ("assigned", "revoked"):
                change = {int(n) for n in numbers.split(",") if n.isdigit()}
                held[pid] = held[pid] | change if verb == "assigned" else held[pid] - change
        fill.commit()
        deadline = time.monotonic() + 600
        while _positions(dsn, fill.topic) != fill.next:
            if time.monotonic() > deadline or any(c.poll() is not None for c in children):
                raise RuntimeError("the members did not read the topic to its end")
            time.sleep(0.2)
        for child in children:
            child.send_signal(signal.SIGTERM)
        while len(stats) < len(children):
            pid, line = lines.get(timeout=60)
            if line.startswith("{"):
                stats[pid] = json.loads(line)
    finally:
        for child in children:
            if child.poll() is None and child.pid not in stats:
                child.kill()
            child.wait()
    fed = sum(s["messages"] for s in stats.values())
    if fed < fill.count:
        raise RuntimeError("members fed %d of %d records" % (fed, fill.count))
    wall = max(s["last"] for s in stats.values()) - min(s["first"] for s in stats.values())
    return wall, sum(s["cpu"] for s in stats.values()), fed


class _Counted:
    """An Ingest whose feed is timed: the first and last record fed, and the CPU between."""

    def __init__(self, ingest):
        self.ingest = ingest
        self.messages = 0
        self.first = self.last = None
        self.cpu_first = self.cpu_last = 0.0

    def __getattr__(self, name):
        return getattr(self.ingest, name)

    def feed(self, *args):
        if self.first is None:
            self.first, self.cpu_first = time.time(), time.process_time()
        changed = self.ingest.feed(*args)
        self.messages += 1
        self.last, self.cpu_last = time.time(), time.process_time()
        return changed


def member(bootstrap, topic, dsn):
    """A member process: runs until SIGTERM; prints its assignments ("assigned 0,1") as they
    come and its figures at the end (one JSON line)."""
    from host_sim.cloud.alerts.rules import load_rules
    from host_sim.cloud.ingest import Ingest
    from host_sim.cloud.kafka import run_member
    from host_sim.cloud.store import open_store
    counted = _Counted(Ingest(open_store(dsn), load_rules()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    def log(line):
        words = line.split()
        if words[:2] in (["kafka:", "assigned"], ["kafka:", "revoked"]):
            print(words[1], words[-1], flush=True)
    run_member(bootstrap, topic, "bench-" + topic, counted, log, stop, lambda alerts: None)
    print(json.dumps({"messages": counted.messages, "first": counted.first, "last": counted.last,
                      "cpu": counted.cpu_last - counted.cpu_first}), flush=True)


def run(devices=40, hours=6):
    sys.path.insert(0, os.path.join(REPO, "tests", "cloud"))
    from kafka_cluster import MockCluster
    progress("kafka bench: replaying %d hours of busy-gateway traffic (host engine)" % hours)
    bodies = _bodies(hours)
    size_mib = sum(len(b) for b in bodies) * devices / 2.0 ** 20
    runs = {"baseline": [], 1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as workdir, MockCluster() as cluster:
        progress("kafka bench: %d records for each of %d devices, a topic per pass"
                 % (len(bodies), devices))
        # alternated and the best of two kept (by CPU): the machine is shared, its load drifts
        for attempt in range(2):
            for name in ("baseline", 1, 2):
                topic = "bench-%s-%d" % (name, attempt)
                cluster.create_topic(topic)
                fill = _Fill(cluster.bootstrap, topic, bodies, devices)
                count = fill.count
                runs[name].append(_baseline(cluster.bootstrap, fill) if name == "baseline"
                                  else _members(cluster.bootstrap, name, workdir, fill))
    read_s, read_cpu = min(runs["baseline"], key=lambda r: r[1])
    base_rate, base_cpu = count / read_s, read_cpu / count
    rows = [["read + decode (baseline)", 1, read_s, count / read_s, 1.0, read_cpu,
             1e6 * base_cpu, 1.0]]
    for processes in (1, 2):
        wall, cpu, fed = min(runs[processes], key=lambda r: r[1])
        rows.append(["alerts --kafka into SQLite", processes, wall, fed / wall,
                     (fed / wall) / base_rate, cpu, 1e6 * cpu / fed, (cpu / fed) / base_cpu])
    table("Kafka source: %d records (%d devices x %d h of busy-gateway traffic, %.0f MiB) from a "
          "4-partition topic of librdkafka's mock cluster, whose fetches bound the wall figures; "
          "CPU summed over the processes, the figure to read on a shared machine" % (
              count, devices, hours, size_mib),
          ["pass", "processes", "wall s", "messages per s", "x baseline (per s)", "CPU s",
           "CPU us per message", "x baseline (CPU)"], rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["member"]:
        member(*sys.argv[2:5])
    else:
        run(*[int(a) for a in sys.argv[1:3]])

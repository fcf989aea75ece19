"""Event Hubs' Kafka surface: messages per second through `alerts --kafka` members (the
default rules into a SQLite store, exactly once) with 1 and 2 consumer processes, against the
baseline of reading and decoding the same records alone (one consumer, no rules, no store).

Data: DEVICES devices x HOURS of busy-gateway traffic (host engine, windows of 7200 s), as
records in the shape `hub serve --route` writes (hub_emulator.route.record), interleaved as a
hub would receive them, in a 4-partition topic of librdkafka's mock cluster (a process of its
own) filled before any consumer starts. Each member is a process running run_member; its
throughput is counted from the first record it feeds to the last, the group's from the first
fed by any member to the last fed by any (the group's join is not counted, its rebalances are).
Run alone: `.venv/bin/python -m bench.kafka_bench [DEVICES [HOURS]]`.
"""
import datetime
import json
import os
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
TOPIC = "bench-events"
PARTITIONS = [0, 1, 2, 3]
WINDOW_MS = 7200 * 1000


def _bodies(hours):
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as workdir:
        trace = os.path.join(workdir, "busy.jsonl")
        tracegen.write(tracegen.busy(duration=hours * 3600.0), trace)
        bodies = []
        replay_host(trace, WINDOW_MS, None, lambda m: bodies.append(m.encode()), lambda line: None)
    return bodies


def _fill(bootstrap, bodies, devices):
    from confluent_kafka import Producer
    from hub_emulator.route import record
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0})
    start = datetime.datetime(2026, 11, 30, tzinfo=datetime.timezone.utc)
    count = 0
    for i, body in enumerate(bodies):
        stamp = (start + datetime.timedelta(seconds=i)).isoformat(timespec="milliseconds")
        for d in range(devices):
            key, value, headers, ms = record({
                "device": "gw-%03d" % d, "time": stamp.replace("+00:00", "Z"), "payload": body,
                "properties": {"$.ct": "application/json", "$.ce": "utf-8"}})
            while True:
                try:
                    producer.produce(TOPIC, value=value, key=key, headers=headers, timestamp=ms)
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
    if producer.flush(120):
        raise RuntimeError("the mock cluster did not take every record")
    from confluent_kafka import Consumer, TopicPartition
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "log_level": 0})
    low = [probe.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)[0] for p in PARTITIONS]
    probe.close()
    if any(low):
        # the mock cluster keeps a bounded log per partition (about 1,100 records of 4 KB)
        raise RuntimeError("the mock cluster dropped the oldest records (low watermarks %s): "
                           "fewer devices or hours" % low)
    return count


def _baseline(bootstrap, count):
    """(wall s, CPU s) of reading and decoding COUNT records: what any consumer must pay."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from host_sim.cloud.alerts.messages import read_message
    from host_sim.cloud.kafka_records import read_record
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "baseline", "log_level": 0,
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING) for p in PARTITIONS])
    read = 0
    started = cpu = None
    while read < count:
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


def _positions(dsn):
    from host_sim.cloud.store import open_store
    store = open_store(dsn)
    try:
        return store.positions("kafka:" + TOPIC, PARTITIONS)
    finally:
        store.close()


def _members(bootstrap, processes, workdir, count):
    """(wall s, CPU s, messages fed) of PROCESSES members of a new group reading the topic."""
    from confluent_kafka import Consumer, TopicPartition
    dsn = os.path.join(workdir, "cloud-%d.db" % processes)
    group = "bench-%d" % processes
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO, os.path.join(REPO, "tools")] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    children = [subprocess.Popen([sys.executable, "-m", "bench.kafka_bench", "member", bootstrap,
                                  group, dsn], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=env, cwd=REPO) for _ in range(processes)]
    for child in children:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("a bench member did not start")
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "log_level": 0})
    high = {p: probe.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)[1]
            for p in PARTITIONS}
    probe.close()
    deadline = time.monotonic() + 600
    while _positions(dsn) != high:
        if time.monotonic() > deadline or any(c.poll() is not None for c in children):
            for child in children:
                child.kill()
            raise RuntimeError("the members did not read the topic to its end")
        time.sleep(0.2)
    stats = []
    for child in children:
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=60)
        stats.append(json.loads(out.strip().splitlines()[-1]))
    fed = sum(s["messages"] for s in stats)
    if fed < count:
        raise RuntimeError("members fed %d of %d records" % (fed, count))
    wall = max(s["last"] for s in stats) - min(s["first"] for s in stats)
    return wall, sum(s["cpu"] for s in stats), fed


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


def member(bootstrap, group, dsn):
    """A member process: waits for "go" on stdin, runs until SIGTERM, prints its figures."""
    from host_sim.cloud.alerts.rules import load_rules
    from host_sim.cloud.ingest import Ingest
    from host_sim.cloud.kafka import run_member
    from host_sim.cloud.store import open_store
    counted = _Counted(Ingest(open_store(dsn), load_rules()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    print("ready", flush=True)
    sys.stdin.readline()
    run_member(bootstrap, TOPIC, group, counted, lambda line: None, stop, lambda alerts: None)
    print(json.dumps({"messages": counted.messages, "first": counted.first, "last": counted.last,
                      "cpu": counted.cpu_last - counted.cpu_first}), flush=True)


def run(devices=40, hours=6):
    sys.path.insert(0, os.path.join(REPO, "tests", "cloud"))
    from kafka_cluster import MockCluster
    progress("kafka bench: replaying %d hours of busy-gateway traffic (host engine)" % hours)
    bodies = _bodies(hours)
    with tempfile.TemporaryDirectory(prefix="kafka-bench-") as workdir, MockCluster() as cluster:
        cluster.create_topic(TOPIC)
        progress("kafka bench: %d records for each of %d devices into the mock cluster"
                 % (len(bodies), devices))
        count = _fill(cluster.bootstrap, bodies, devices)
        progress("kafka bench: reading")
        read_s, read_cpu = _baseline(cluster.bootstrap, count)
        one = _members(cluster.bootstrap, 1, workdir, count)
        two = _members(cluster.bootstrap, 2, workdir, count)
        size_mib = sum(len(b) for b in bodies) * devices / 2.0 ** 20
    rows = [["read + decode only, 1 consumer (baseline)", 1, read_s, read_cpu, count / read_s,
             count / read_cpu, 1.0]]
    for processes, (wall, cpu, fed) in ((1, one), (2, two)):
        rows.append(["alerts --kafka: default rules into SQLite", processes, wall, cpu,
                     fed / wall, fed / cpu, (fed / wall) / (count / read_s)])
    table("Kafka source: %d records (%d devices x %d h of busy-gateway traffic, %.0f MiB) from a "
          "4-partition topic of librdkafka's mock cluster; 2 cores shared, CPU s summed over "
          "the processes" % (count, devices, hours, size_mib),
          ["pass", "processes", "wall s", "CPU s", "messages per s", "messages per CPU s",
           "x baseline (per s)"], rows)


if __name__ == "__main__":
    if sys.argv[1:2] == ["member"]:
        member(*sys.argv[2:5])
    else:
        run(*[int(a) for a in sys.argv[1:3]])

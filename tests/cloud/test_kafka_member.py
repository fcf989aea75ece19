"""`microagent alerts --kafka` members of one consumer group behind `hub serve --route`, on
librdkafka's mock cluster and a real store (SQLite, and Debian's PostgreSQL): a member killed
with SIGKILL mid-stream and its partitions taken over loses no alert and duplicates none (the
oracle: `alerts --data` over the hub's store, uninterrupted); malformed records are named by
partition and offset and skipped; the Event Hubs connection string is in no argv and no log."""
import json
import os
import signal
import subprocess
import threading

import pytest
from confluent_kafka import Consumer, KafkaError

from hub_emulator.process import HubProcess
from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.ingest import Ingest
from host_sim.cloud import kafka
from host_sim.cloud.kafka_config import consumer_settings
from host_sim.cloud.store import open_store
from hub_replays import MICROAGENT, QUIET_SAMPLE, attacked_trace, replay_to_hub, write_rules
from kafka_cluster import MockCluster, dead_address, topic_size
from polling import wait_for

TOPIC = "hub-events"
GROUP = "alerts"
SOURCE = "kafka:" + TOPIC
PARTITIONS = [0, 1, 2, 3]
SECRET_KEY = "c2VjcmV0LWtleS1vZi10aGUtdGVzdA=="
CONNECTION_STRING = ("Endpoint=sb://microagent-test.servicebus.windows.net/;"
                     "SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=" + SECRET_KEY)


class Member:
    """One `microagent alerts --kafka` process; the store DSN comes from the environment."""

    def __init__(self, tmp_path, name, bootstrap, dsn, rules=None, env=None):
        self.log_path = tmp_path / (name + ".log")
        args = [MICROAGENT, "alerts", "--kafka", bootstrap, "--topic", TOPIC, "--group", GROUP,
                "--store", "--json"] + (["--rules", rules] if rules else [])
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL,
                                         env=dict(os.environ, MICROAGENT_STORE=dsn, **(env or {})))

    def log(self):
        return self.log_path.read_text(errors="replace")

    def assigned(self):
        return "kafka: assigned" in self.log()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def watermarks(bootstrap):
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "sizer", "log_level": 0})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=30)[1]
                for p in PARTITIONS}
    finally:
        consumer.close()


def stored_positions(dsn):
    store = open_store(dsn)
    try:
        return store.positions(SOURCE, PARTITIONS)
    finally:
        store.close()


def brute_force(alerts):
    return sorted((a["device"], a["key"], a["count"]) for a in alerts if a["rule"] == "brute-force")


def test_a_member_killed_mid_stream_loses_and_duplicates_no_alert(tmp_path, store_dsn):
    rules = write_rules(tmp_path / "hour.json", 3600)
    attacked = tmp_path / "attacked.jsonl"
    attacked_trace(attacked)
    first = [("attacked-1", attacked), ("quiet-1", QUIET_SAMPLE), ("attacked-2", attacked)]
    second = [("quiet-2", QUIET_SAMPLE), ("attacked-3", attacked), ("attacked-4", attacked)]
    members = []
    with MockCluster() as cluster, HubProcess(
            tmp_path / "hub", extra_args=["--route", "kafka://%s/%s" % (cluster.bootstrap, TOPIC)]) as hub:
        assert cluster.create_topic(TOPIC) == len(PARTITIONS)
        try:
            members = [Member(tmp_path, "m1", cluster.bootstrap, store_dsn, rules),
                       Member(tmp_path, "m2", cluster.bootstrap, store_dsn, rules)]
            assert wait_for(lambda: all(m.assigned() for m in members), 90), members[0].log()
            for device, trace in first:
                replay_to_hub(hub, device, trace, tmp_path)
            assert wait_for(lambda: any(stored_positions(store_dsn).values()), 60)
            members[0].kill()                     # mid-stream: the second half is still to come
            for device, trace in second:
                replay_to_hub(hub, device, trace, tmp_path)
            members.append(Member(tmp_path, "m3", cluster.bootstrap, store_dsn, rules))
            stored = len(hub.messages())
            assert wait_for(lambda: topic_size(cluster.bootstrap, TOPIC) == stored, 60)
            high = watermarks(cluster.bootstrap)
            assert wait_for(lambda: stored_positions(store_dsn) == high, 120), (
                stored_positions(store_dsn), high, members[1].log()[-2000:], members[2].log()[-2000:])
        finally:
            codes = [m.stop() for m in members[1:]]
            for m in members:
                if m.proc.poll() is None:
                    m.kill()
        assert codes == [0, 0], [m.log()[-2000:] for m in members[1:]]
        oracle = subprocess.run([MICROAGENT, "alerts", "--data", hub.data_dir, "--json", "--rules", rules],
                                capture_output=True, text=True, timeout=300)
    assert oracle.returncode == 0, oracle.stderr
    expected = brute_force(json.loads(line) for line in oracle.stdout.splitlines())
    assert [device for device, _, _ in expected] == ["attacked-1", "attacked-2", "attacked-3", "attacked-4"]
    store = open_store(store_dsn)
    try:
        assert brute_force(store.alerts()) == expected
    finally:
        store.close()


def produce(bootstrap, records):
    """RECORDS: [(key, value, headers)] to partition 0, in order."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for key, value, headers in records:
        producer.produce(TOPIC, value=value, key=key, headers=headers, partition=0)
    assert producer.flush(30) == 0


def test_malformed_records_are_named_by_partition_and_offset_and_skipped(tmp_path):
    body = json.dumps({"Events": [{"Name": "Login", "Payload": [], "TimestampUTC": "2026-12-08T00:00:00.000Z"}]}).encode()
    records = [(None, body, None),                                           # no key, no header
               (b"dev-good", b"\xff\xfe not a message", [("content-type", b"application/json")]),
               (b"dev-good", body, [("huge", b"\xa1" + b"x" * 200000)]),
               (b"dev bad id", body, None),
               (b"dev-good", body, [("content-type", b"application/json")])]
    dsn = str(tmp_path / "cloud.db")
    with MockCluster() as cluster:
        cluster.create_topic(TOPIC)
        produce(cluster.bootstrap, records)
        member = Member(tmp_path, "m", cluster.bootstrap, dsn)
        try:
            assert wait_for(lambda: stored_positions(dsn)[0] == len(records), 90), member.log()
            assert member.proc.poll() is None
        finally:
            assert member.stop() == 0, member.log()
    lines = member.log().splitlines()
    for offset in range(4):
        named = [line for line in lines if "partition 0 offset %d" % offset in line]
        assert len(named) == 1, (offset, lines)
    assert "no device id" in " ".join(lines)
    store = open_store(dsn)
    try:
        assert store.device_row("dev-good")["messages"] == 1
    finally:
        store.close()


def test_the_connection_string_is_in_no_argv_and_no_log_line(tmp_path, monkeypatch):
    dsn = str(tmp_path / "cloud.db")
    env = {"MICROAGENT_KAFKA_CONNECTION_STRING": CONNECTION_STRING}
    member = Member(tmp_path, "m", dead_address(), dsn, env=env)
    hub = HubProcess(tmp_path / "hub", extra_args=["--route", "kafka://%s/%s" % (dead_address(), TOPIC)])
    monkeypatch.setenv("MICROAGENT_KAFKA_CONNECTION_STRING", CONNECTION_STRING)
    hub.start()
    monkeypatch.delenv("MICROAGENT_KAFKA_CONNECTION_STRING")
    try:
        assert wait_for(lambda: "kafka:" in member.log() and "route to" in hub.log(), 60), (
            member.log(), hub.log())
        for pid in (member.proc.pid, hub.proc.pid):
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                assert SECRET_KEY.encode() not in f.read()
    finally:
        member.stop()
        hub.stop()
    for text in (member.log(), hub.log()):
        assert SECRET_KEY not in text and "SharedAccessKey=" not in text
    said = [line for line in member.log().splitlines() if line.startswith("kafka:")]
    assert said and len(said) == len(set(said))     # a broker that stays down is said once
    said = [line.split(" hub: ", 1)[1] for line in hub.log().splitlines() if "route to" in line]
    assert said and len(said) == len(set(said))


def committed_offsets(bootstrap):
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "log_level": 0})
    try:
        return {tp.partition: tp.offset for tp in consumer.committed(
            [TopicPartition(TOPIC, p) for p in PARTITIONS], timeout=30)}
    finally:
        consumer.close()


def test_ctrl_c_commits_the_store_then_the_offsets_and_leaves_the_group(tmp_path):
    body = json.dumps({"Events": [{"Name": "Login", "Payload": []}]}).encode()
    dsn = str(tmp_path / "cloud.db")
    with MockCluster() as cluster:
        cluster.create_topic(TOPIC)
        produce(cluster.bootstrap, [(b"dev-%d" % (i % 3), body, None) for i in range(20)])
        member = Member(tmp_path, "m", cluster.bootstrap, dsn)
        try:
            assert wait_for(lambda: stored_positions(dsn)[0] == 20, 90), member.log()
        finally:
            member.proc.send_signal(signal.SIGINT)
            assert member.proc.wait(60) == 0, member.log()
        assert "kafka: revoked hub-events partitions 0,1,2,3" in member.log()
        assert committed_offsets(cluster.bootstrap)[0] == 20


def test_a_fatal_kafka_error_ends_the_member_with_one_line(tmp_path):
    lines = []
    with MockCluster() as cluster:
        cluster.create_topic(TOPIC)
        ingest = Ingest(open_store(str(tmp_path / "cloud.db")), load_rules())
        member = kafka.Member(None, TOPIC, ingest, lines.append, lambda alerts: None)
        member.consumer = Consumer(dict(consumer_settings(cluster.bootstrap, GROUP),
                                        error_cb=member.on_error))
        # librdkafka raises fatal consumer errors for static members fenced by another; the
        # member's handling is what is tested, so the error is handed to it as librdkafka would
        member.on_error(KafkaError(KafkaError._FENCED, "fenced by another member", fatal=True))
        with pytest.raises(kafka.KafkaSourceError) as raised:
            member.run(threading.Event())
        member.consumer.close()
        ingest.close()
    assert "\n" not in str(raised.value) and "fenced by another member" in str(raised.value)
    assert lines == ["kafka: fenced by another member"]

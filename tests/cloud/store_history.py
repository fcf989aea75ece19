"""A history of device messages for the store's tests, as a consumer reads it: several devices
on two partitions, in arrival order, with a brute force, a new process after learning, SBoM
reports, a device silent for hours in the middle, and messages no consumer can read. Written
as JSON lines [partition, offset, device, arrival, properties, body] and run by ingest_child.py
(a real process, so a test can kill it with SIGKILL)."""
import json
import os
import subprocess
import sys

from alert_helpers import START, login_failed, merged, periodic, quiet, replay, rules_file
from hub_replays import Lines
from host_sim.cloud.alerts.messages import message_time, read_message
from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.alerts.run import Evaluation
from host_sim.cloud.alerts.sources import StoredMessage

PROPERTIES = {"$.ct": "application/json"}
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ingest_child.py")
PARTITION = {"attacked": 0, "quiet-a": 1, "quiet-b": 0, "gappy": 1, "broken": 1}


def build(tmp_path):
    """(history path, rules path): the history file and the rules (an hour of learning)."""
    burst = [login_failed(START + 5 * 3600 - 27 + 10 * i, "203.0.113.9") for i in range(10)]
    odd = [{"kind": "process", "t": START + 6 * 3600, "type": "exec", "pid": 901, "ppid": 1,
            "uid": 0, "commandline": "/tmp/.x/miner"}]
    packages = [{"name": "openssl", "version": "3.0.1", "vendor": "debian"},
                {"name": "zlib", "version": "1.2", "vendor": "debian"}]
    gappy = [e for e in quiet(hours=8, seed=4) if not START + 3 * 3600 < e["t"] < START + 6 * 3600]
    streams = {
        "attacked": replay(merged(quiet(hours=8), burst, odd), tmp_path, name="a.jsonl")
        + periodic("SBoM", packages, START + 60) + periodic("SBoM", packages[:1], START + 7 * 3600)
        + periodic("SBoM", [dict(packages[0], version="3.0.9")], START + 7.5 * 3600),
        "quiet-a": replay(quiet(hours=8, seed=2), tmp_path, name="b.jsonl"),
        "quiet-b": replay(quiet(hours=8, seed=3), tmp_path, name="c.jsonl"),
        "gappy": replay(gappy, tmp_path, name="d.jsonl"),
    }
    timed = []
    for device, bodies in streams.items():
        for body in bodies:
            t = message_time(read_message(body.encode(), PROPERTIES), 0.0)
            timed.append((t, device, body))
    timed += [(START + 4 * 3600, "broken", "[" * 1000), (START + 4 * 3600 + 1, "broken", "{}")]
    timed.sort(key=lambda r: (r[0], r[1]))
    offsets = {0: 100, 1: 0}   # partition 0 starts at 100: an offset is not an index
    path = os.path.join(str(tmp_path), "history.jsonl")
    with open(path, "w") as f:
        for t, device, body in timed:
            partition = PARTITION[device]
            f.write(json.dumps([partition, offsets[partition], device, t + 0.5, PROPERTIES,
                                body]) + "\n")
            offsets[partition] += 1
    return path, rules_file(tmp_path, learning_s=3600, name="store-rules.json")


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def expected_alerts(history_path, rules_path):
    """The oracle: one AlertEngine fed the whole history, no store (the non-store path of
    `alerts`, which also counts malformed messages), silence checked at the end; rows
    comparable with alert_rows()."""
    evaluation = Evaluation(load_rules(rules_path))
    evaluation.batch(StoredMessage(offset, device, arrival, properties, body.encode())
                     for _partition, offset, device, arrival, properties, body
                     in read(history_path))
    engine = evaluation.engine
    return sorted((a.device, a.rule, a.key, a.severity, a.title, a.what_to_do, a.first, a.last,
                   a.count, a.evidence) for a in engine.alerts.values())


def alert_rows(store):
    return sorted((a["device"], a["rule"], a["key"], a["severity"], a["title"], a["what_to_do"],
                   a["first"], a["last"], a["count"], a["evidence"]) for a in store.alerts())


class Child:
    """ingest_child.py over HISTORY into DSN (given on stdin, never argv or environment)."""

    def __init__(self, dsn, history, rules, commit_every=7, stop_after=None, partitions=(0, 1)):
        self.proc = subprocess.Popen(
            [sys.executable, CHILD, history, rules, str(commit_every), str(stop_after or 0),
             ",".join(map(str, partitions))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.proc.stdin.write(dsn + "\n")
        self.proc.stdin.flush()
        self.lines = Lines(self.proc.stdout)

    def wait_line(self, prefix, timeout=120):
        return self.lines.wait_for(lambda line: line.startswith(prefix), timeout)

    def finish(self, timeout=300):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=timeout) == 0, self.proc.stderr.read()

    def kill(self):
        self.proc.kill()
        self.proc.wait(timeout=60)

"""Bounded decoding and the validation layer (issue 24, items 1 and 2).

- Decoding: time and peak memory (tracemalloc) of decoding one compact body: the largest legal
  message (256 KB of Login items, three 2,048-byte strings each, all string references after
  the first) and the refused bombs (shared values, string references, nesting), against one
  typical 4 KB message of a busy gateway as the baseline. The bombs are built with cbor2's
  encoder, not ours.
- Alerts: messages per CPU second through read_message and the default rules, the validation
  on (read_message) against off (the decoder alone), same messages, same run.
Run alone: `.venv/bin/python -m bench.validation_bench [DEVICES]`.
"""
import os
import sys
import tempfile
import time
import tracemalloc

import cbor2
from cbor2 import CBORTag

from bench.report import progress, table
from host_sim import tracegen
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.messages import read_message
from host_sim.cloud.alerts.rules import load_rules
from host_sim.replay import replay_host
from microagent import events
from microagent.compact import CompactEncoder
from microagent.decode import DecodeError, decode_body
from microagent.encode import COMPACT, MAX_MESSAGE_SIZE

AGENT = "6c7a4b1e-2f0d-4c55-9a51-000000000001"
T0 = 1767225600000
REPEATS = 5


def _typical(workdir):
    """The first full 4 KB compact message of a busy gateway's hour (host engine)."""
    trace = os.path.join(workdir, "busy-hour.jsonl")
    tracegen.write(tracegen.busy(duration=3600.0), trace)
    bodies = []
    replay_host(trace, 600 * 1000, None, bodies.append, lambda line: None, encoding=COMPACT)
    os.remove(trace)
    import base64
    return max((base64.b64decode(b) for b in bodies), key=len)


def _largest():
    out = []
    encoder = CompactEncoder(AGENT, lambda buf, n: out.append(bytes(buf[:n])), MAX_MESSAGE_SIZE)
    encoder.begin(T0)
    encoder.event(events.LOGIN, "Triggered", "Security")
    while not out:
        encoder.item(events.LOGIN_FIELDS, (0, "LoginFailed", 1, "u" * 2048, "e" * 2048, "r" * 2048))
    return out[0]


def _generic(item, agent=bytes(16)):
    return cbor2.dumps(CBORTag(256, [1, agent, "0.1.0", T0, 0, 0,
                                     [4, bytes(16), "SystemInformation", "Periodic", "Security",
                                      item]]))


def _shared_value_bomb():
    value = CBORTag(28, [0] * 10)
    for number in range(7, -1, -1):
        value = CBORTag(28, [value] + [CBORTag(29, number + 1)] * 9)
    return _generic({"nics": value})       # 10^9 leaves


def _stringref_bomb():
    return _generic({"os_dist": [CBORTag(25, 0)] * 5000}, agent="x" * 200000)   # 1 GB of text


def _nested(depth):
    placeholder = b"nested arrays go here"
    return _generic({"vlans": placeholder}).replace(cbor2.dumps(placeholder),
                                                    b"\x81" * depth + b"\x00")


def _decode_once(body):
    """(seconds, peak bytes, outcome) of one decode of BODY."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        decode_body(body)
        outcome = "read"
    except DecodeError as exc:   # the reason without its details: what limit refused it
        outcome = "refused: " + str(exc).replace("corrupted compact message: ", "").split(":")[0]
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return elapsed, peak, outcome


def _decode_figures(body):
    """Best time of REPEATS decodes (timed without tracemalloc), and one traced decode."""
    best = None
    for _ in range(REPEATS):
        started = time.perf_counter()
        try:
            decode_body(body)
        except DecodeError:
            pass
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    _, peak, outcome = _decode_once(body)
    return best, peak, outcome


def _decoding(workdir):
    cases = [("typical 4 KB busy-gateway message (baseline)", _typical(workdir)),
             ("largest legal message (256 KB of Login items)", _largest()),
             ("shared-value bomb (10^9 leaves)", _shared_value_bomb()),
             ("stringref bomb (1 GB of text)", _stringref_bomb()),
             ("nesting 29 deep", _nested(29)),
             ("nesting 200,000 deep", _nested(200000))]
    rows = []
    base_s = base_peak = None
    for label, body in cases:
        seconds, peak, outcome = _decode_figures(body)
        if base_s is None:
            base_s, base_peak = seconds, peak
        rows.append([label, len(body), seconds * 1000.0, peak / 1024.0, seconds / base_s,
                     peak / float(base_peak), outcome])
    table("Decoding one compact body (best of %d; peak memory by tracemalloc)" % REPEATS,
          ["body", "bytes", "ms", "peak KiB", "x baseline (time)", "x baseline (memory)",
           "outcome"], rows)


def _bodies(workdir, devices):
    trace = os.path.join(workdir, "busy-day.jsonl")
    tracegen.write(tracegen.busy(duration=86400.0), trace)
    bodies = []
    replay_host(trace, 7200 * 1000, None, lambda m: bodies.append(m.encode()), lambda line: None)
    os.remove(trace)
    return [("gw-%03d" % d, body) for body in bodies for d in range(devices)]


def _through_rules(messages, read):
    """(CPU s, alerts) of MESSAGES read by READ(body, properties) and fed to the rules."""
    engine = AlertEngine(load_rules())
    properties = {"$.ct": "application/json"}
    cpu = time.process_time()
    for arrival, (device, body) in enumerate(messages):
        engine.feed(device, properties, read(body, properties), T0 / 1000.0 + arrival)
    engine.check_silence()
    return time.process_time() - cpu, len(engine.alerts)


def _throughput(workdir, devices):
    messages = _bodies(workdir, devices)
    runs = {"off": [], "on": []}
    # alternated and the best of two kept: the machine is shared, its load drifts
    for _ in range(2):
        runs["off"].append(_through_rules(messages, decode_body))
        runs["on"].append(_through_rules(messages, read_message))
    off_cpu, off_alerts = min(runs["off"])
    on_cpu, on_alerts = min(runs["on"])
    count = len(messages)
    table("Alert rules over %d messages (%d devices x a day of busy-gateway traffic), the "
          "validation on against off (CPU time)" % (count, devices),
          ["pass", "CPU s", "messages per CPU s", "alerts", "x baseline (CPU)"],
          [["decode + rules, no validation (baseline)", off_cpu, count / off_cpu, off_alerts,
            1.0],
           ["decode + validation + rules (read_message)", on_cpu, count / on_cpu, on_alerts,
            on_cpu / off_cpu]])


def run(devices=20):
    with tempfile.TemporaryDirectory(prefix="validation-bench-") as workdir:
        progress("validation bench: decoding bodies and bombs")
        _decoding(workdir)
        progress("validation bench: a day of busy-gateway traffic for %d devices" % devices)
        _throughput(workdir, devices)


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 20)

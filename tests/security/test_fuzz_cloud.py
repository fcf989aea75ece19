"""Fuzzing the cloud side (issue 24, item 10): arbitrary JSON bodies (shaped like our messages,
and any JSON at all) and arbitrary compact CBOR bodies (string references, shared values, NaN)
from one hostile device, while a second, honest device sends a brute force.

In-process, a few hundred examples each: every body goes through read_message, the alert engine
and the console's model and pages, each example within TIME_BOUND_S and a tracemalloc peak of
MEMORY_BOUND bytes (a test fails past them), and the honest device's alerts are those of a run
without the hostile device, which are the attack's (oracle: the brute force it sent).
Through the running hub, a smaller batch: `hub messages --json`, `decode`, `alerts --json` and
the console's pages as subprocesses under a 1 GB address-space cap."""
import base64
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_terminal_safety import TERMINAL_CONTROL
from hostile_device import (END_OF_TIME, WHEN, cbor_array, cbor_map, cbor_tag, cbor_text,
                            cbor_uint, compact_generic, connection, dropped, event, login,
                            message, process, send)
from host_sim.cloud.alerts.messages import parse_time
from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.alerts.run import Evaluation
from host_sim.cloud.alerts.sources import HubStore, StoredMessage
from host_sim.cloud.console import pages
from host_sim.cloud.console.model import FleetModel
from host_sim.commands.alerts import _table
from hub_emulator import store
from hub_emulator.database import open_db
from hub_emulator.process import HubProcess

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "alerts"))
from hub_replays import MICROAGENT, Lines  # noqa: E402

IN_PROCESS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                             HealthCheck.function_scoped_fixture])
THROUGH_HUB = settings(max_examples=2, deadline=None, derandomize=True, database=None,
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                              HealthCheck.function_scoped_fixture])
TIME_BOUND_S = 10.0
MEMORY_BOUND = 64 << 20
ADDRESS_SPACE = 1 << 30
HONEST, HOSTILE = "honest", "hostile"
ATTACKER = "203.0.113.9"
JSON_TYPE = {"$.ct": "application/json"}
ARRIVAL = parse_time(WHEN)

# The honest device: ten failed SSH logins from ATTACKER within 45 s, split over two messages,
# and one ordinary login. The attack is the oracle: one High brute-force alert from ATTACKER.
HONEST_BODIES = [
    message(event("Login", [login(timestamp="2026-01-01T00:10:%02d.000Z" % (5 * i),
                                  remote_address=ATTACKER) for i in range(5)])),
    message(event("Login", [login(operation="Login", user_name="admin",
                                  remote_address="192.168.1.5")])),
    message(event("Login", [login(timestamp="2026-01-01T00:10:%02d.000Z" % (25 + 5 * i),
                                  remote_address=ATTACKER) for i in range(5)])),
]
EXPECTED_HONEST = [("brute-force", ATTACKER, "High")]

# Hypothesis values: JSON, and message-shaped JSON whose fields hold anything.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=20)
NAMES = ["SystemInformation", "Baseline", "SBoM", "OSBaseline"]
TELLING = st.sampled_from([WHEN, END_OF_TIME[0], END_OF_TIME[1], "1970-01-01T00:00:00Z",
                           "2970-01-01T00:00:00.000Z", "", "\x1b]0;pwned\x07", ATTACKER,
                           "in", "out", "TCP", "UDP", "exec", "LoginFailed", 0, -1, 65536,
                           2 ** 64, 1e308, "ProcessCreate", [], {}, [1], {"a": 1}])
field_values = st.one_of(TELLING, json_values)
# Our message shape: each event kind's complete, valid item with a few fields replaced by
# anything or left out, so most examples reach the rules and the console with one poison.
TEMPLATES = {"ProcessCreate": process(), "ConnectionCreate": connection(), "Login": login(),
             "DroppedEvents": dropped()}


def mostly(valid, poison):
    """VALID seven times in eight, else POISON (one_of would pick each half the time)."""
    return st.integers(0, 7).flatmap(lambda n: poison if n == 0 else valid)


def _mutated(template, replaced, removed):
    item = dict(template, **replaced)
    for key in removed:
        item.pop(key, None)
    return item


def _items_of(name):
    template = TEMPLATES.get(name)
    if template is None:
        return st.dictionaries(st.text(max_size=8), field_values, max_size=6)
    fields = sorted(template)
    return st.builds(_mutated, st.just(template),
                     st.dictionaries(st.sampled_from(fields) | st.text(max_size=4),
                                     field_values, max_size=3),
                     st.lists(st.sampled_from(fields), max_size=2))


shaped_events = st.sampled_from(sorted(TEMPLATES) * 3 + NAMES).flatmap(
    lambda name: st.fixed_dictionaries(
        {"Name": mostly(st.just(name), field_values),
         "Payload": mostly(st.lists(_items_of(name), min_size=1, max_size=4), field_values),
         "TimestampUTC": mostly(st.just(WHEN), TELLING | field_values),
         "Category": st.just("Triggered"), "EventType": st.just("Security")}))
shaped_messages = st.fixed_dictionaries(
    {"AgentId": mostly(st.just("6c7a4b1e"), st.text(max_size=40) | field_values),
     "AgentVersion": st.just("0.1.0"), "MessageSchemaVersion": st.just("1.0"),
     "Events": mostly(st.lists(shaped_events, min_size=1, max_size=4), field_values)})
json_bodies = mostly(shaped_messages, json_values).map(
    lambda value: json.dumps(value, allow_nan=True).encode())

# Compact bodies: our envelope around hypothesis items, with cbor2 adding string references
# (tags 256/25) and shared values (tags 28/29); a shared value repeated on purpose; and raw
# bytes after the compact magic.
cbor_leaves = (st.none() | st.booleans() | st.integers(-2 ** 64, 2 ** 64)
               | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
               | st.binary(max_size=20))
cbor_values = st.recursive(cbor_leaves, lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(st.text(max_size=8), children, max_size=4),
                           max_leaves=20)
# each kind's valid positional item (docs/compact-encoding.md) with a few positions replaced
COMPACT_ITEMS = {0: [0, 100, 1, 1000, "/usr/bin/true", 1, 1, None, "pi"],
                 1: [0, b"\xc0\xa8\x01\x14", b"\xc6\x33\x64\x07", 40000, 443, 2, 1, 1, 1,
                     0, None],
                 2: [0, 2, 1, "root", "sshd", b"\xc6\x33\x64\x08"],
                 3: [0, 0, 256, 1, 0, 0]}


def _compact_item(kind, replaced):
    item = list(COMPACT_ITEMS[kind])
    for position, value in replaced:
        item[position % len(item)] = value
    return item


compact_events = st.one_of(
    st.sampled_from(sorted(COMPACT_ITEMS)).flatmap(lambda kind: st.lists(
        st.builds(_compact_item, st.just(kind),
                  st.lists(st.tuples(st.integers(0, 10), cbor_values), max_size=2)),
        min_size=1, max_size=4).map(lambda found: [kind, bytes(16)] + found)),
    st.tuples(st.integers(-1, 6), st.binary(min_size=15, max_size=17),
              st.lists(cbor_values, max_size=5)).map(lambda t: [t[0], t[1]] + t[2]))
compact_envelopes = st.tuples(
    st.sampled_from([1, 1, 1, 0, 2]), st.binary(min_size=16, max_size=16) | st.text(max_size=8),
    st.integers(-1, 2 ** 64) | st.sampled_from([1767226210000, 253402300799999]),
    st.none() | st.integers(-2000, 2000), st.integers(-2 ** 63, 2 ** 63),
    st.lists(compact_events, max_size=3))


def _compact(envelope, share, shared_item, repeat):
    version, agent, when, offset, window, found = envelope
    top = [version, agent, "0.1.0", when, offset, window] + found
    if repeat:   # one value in many places: tags 28/29 (and its strings: tag 25)
        top.append([4, bytes(16), "X", "Triggered", "Security", {"v": [shared_item] * repeat}])
    return cbor2.dumps(top, value_sharing=share, string_referencing=True)


def _levels_bomb(levels, fan_out):
    pairs = [(cbor_text("l0"), cbor_tag(28, cbor_array([cbor_uint(0)] * fan_out)))]
    for level in range(1, levels + 1):
        pairs.append((cbor_text("l%d" % level),
                      cbor_tag(28, cbor_array([cbor_tag(29, cbor_uint(level - 1))] * fan_out))))
    return compact_generic(cbor_map(pairs))


compact_bodies = st.one_of(
    st.builds(_compact, compact_envelopes, st.booleans(), cbor_values, st.integers(0, 50)),
    st.builds(_levels_bomb, st.integers(1, 12), st.integers(2, 40)),
    st.binary(max_size=200).map(lambda data: b"\xd9\x01\x00" + data))
any_bodies = st.one_of(json_bodies, compact_bodies)


def _honest_alerts(hostile_body=None):
    """The honest device's alerts (rule, key, severity, count, first, last, evidence) from
    feeding its messages, with HOSTILE_BODY (if any) from the other device in between."""
    evaluation = Evaluation(load_rules(None))
    stream = [StoredMessage(i, HONEST, ARRIVAL + i, JSON_TYPE, body)
              for i, body in enumerate(HONEST_BODIES)]
    if hostile_body is not None:
        stream.insert(1, StoredMessage(99, HOSTILE, ARRIVAL + 1, {}, hostile_body))
    alerts = evaluation.batch(stream)
    table = "\n".join(_table([a.as_dict() for a in alerts], 200)).encode("utf-8")
    assert TERMINAL_CONTROL.search(table) is None
    return [(a["rule"], a["key"], a["severity"], a["count"], a["first"], a["last"],
             json.dumps(a["evidence"], sort_keys=True))
            for a in (alert.as_dict() for alert in alerts) if a["device"] == HONEST]


BASELINE = None


def _baseline():
    global BASELINE
    if BASELINE is None:
        BASELINE = _honest_alerts()
        assert [(rule, key, severity) for rule, key, severity, *_ in BASELINE] == EXPECTED_HONEST
    return BASELINE


def _console_pages(hostile_body):
    """The console's model over a real hub store of its own holding the honest device's
    messages and HOSTILE_BODY; its fleet page and both device pages."""
    with tempfile.TemporaryDirectory() as data_dir:
        db = open_db(data_dir)
        for body in HONEST_BODIES[:1] + [hostile_body] + HONEST_BODIES[1:]:
            device = HONEST if body is not hostile_body else HOSTILE
            store.add(db, device, "devices/%s/messages/events/" % device,
                      JSON_TYPE if device == HONEST else {}, body)
        db.close()
        source = HubStore(data_dir)
        try:
            model = FleetModel(source, load_rules(None))
            model.refresh()
            with model.lock:
                pages.fleet_page(model, "S1", 1)
                assert sorted(model.devices) == [HONEST, HOSTILE]
                for view in model.devices.values():
                    pages.device_page(model, view)
        finally:
            source.close()


def _bounded(run):
    """RUN() within TIME_BOUND_S, then again within MEMORY_BOUND of Python allocations at its
    peak (timed apart: tracing slows it several times over)."""
    started = time.monotonic()
    run()
    took = time.monotonic() - started
    assert took < TIME_BOUND_S, "%.1f s for one example" % took
    tracemalloc.start()
    try:
        run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, "%.0f MB at the peak for one example" % (peak / 1e6)


def _check_in_process(body):
    def run():
        assert _honest_alerts(body) == _baseline()
        _console_pages(body)
    _bounded(run)


@IN_PROCESS
@given(json_bodies)
def test_json_bodies_in_process(body):
    _check_in_process(body)


@IN_PROCESS
@given(compact_bodies)
def test_compact_bodies_in_process(body):
    _check_in_process(body)


# Through the running hub, as subprocesses.
def _capped():
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _microagent(*args, check=True):
    """MICROAGENT ARGS under the cap: no traceback, nothing a terminal would act on."""
    done = subprocess.run([MICROAGENT] + [str(a) for a in args], capture_output=True,
                          timeout=120, preexec_fn=_capped)
    stderr = done.stderr.decode("utf-8", errors="replace")
    assert "Traceback" not in stderr, stderr[-3000:]
    for stream in (done.stdout, done.stderr):
        assert TERMINAL_CONTROL.search(stream) is None, stream[-3000:]
    if check:
        assert done.returncode == 0, stderr[-3000:]
    return done


def _strict_lines(output):
    def refuse(name):
        raise AssertionError("%s in JSON output" % name)
    return [json.loads(line, parse_constant=refuse) for line in output.decode().splitlines()]


def _honest_of(output):
    return sorted((a["rule"], a["key"], a["severity"], a["count"], a["first"], a["last"])
                  for a in _strict_lines(output) if a["device"] == HONEST and a["kind"] == "alert")


@pytest.fixture(scope="module")
def honest_hub(tmp_path_factory):
    """A hub holding the honest device's messages only, and its alerts (the baseline)."""
    hub = HubProcess(tmp_path_factory.mktemp("honest") / "hub")
    hub.add_device(HOSTILE)
    hub.add_device(HONEST)
    with hub:
        send(hub, HONEST, HONEST_BODIES)
    baseline = _honest_of(_microagent("alerts", "--data", hub.data_dir, "--json").stdout)
    assert [(rule, key, severity) for rule, key, severity, *_ in baseline] == EXPECTED_HONEST
    return hub, baseline


def _pages(data_dir):
    proc = subprocess.Popen([MICROAGENT, "console", "--data", data_dir, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=_capped)
    try:
        url = Lines(proc.stdout).wait_for(lambda line: line.startswith("console: http://"),
                                          120).split()[1]
        for page in ("", "device?id=" + HONEST, "device?id=" + HOSTILE):
            with urllib.request.urlopen(url + page, timeout=120) as response:
                assert response.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@THROUGH_HUB
@given(st.lists(any_bodies, min_size=15, max_size=15))
def test_bodies_through_the_hub(honest_hub, tmp_path_factory, bodies):
    source, baseline = honest_hub
    data_dir = str(tmp_path_factory.mktemp("fuzzed") / "hub")
    shutil.copytree(source.data_dir, data_dir)
    hub = HubProcess(data_dir)
    with hub:
        send(hub, HOSTILE, bodies)
    listed = _strict_lines(_microagent("hub", "messages", "--data", data_dir, "--json").stdout)
    assert len([m for m in listed if m["device"] == HONEST]) == len(HONEST_BODIES)
    _microagent("hub", "messages", "--data", data_dir)
    _microagent("alerts", "--data", data_dir)
    lines = tmp_path_factory.mktemp("decode") / "bodies.txt"
    lines.write_text("".join(_line(body) + "\n" for body in bodies))
    decoded = _microagent("decode", lines, check=False)
    assert decoded.returncode in (0, 1)
    _strict_lines(decoded.stdout)
    assert _honest_of(_microagent("alerts", "--data", data_dir, "--json").stdout) == baseline
    _pages(data_dir)


def _line(body):
    """BODY as `decode` reads it: a JSON object as its text, anything else as base64."""
    if body.startswith(b"{"):
        return body.decode("utf-8")
    return base64.b64encode(body).decode("ascii")

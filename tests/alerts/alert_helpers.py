"""Messages made by the real host engine from hand-made or generated traces, and the alert
engine run over them as the hub would store them."""
import json
import os

from host_sim import tracegen
from host_sim.cloud.alerts.messages import message_time, read_message
from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.engine import build_host_engine
from host_sim.replay import replay_host

START = tracegen.START
AGENT = "6c7a4b1e-2f0d-4c55-9a51-000000000001"


def replay(events, tmp_path, window_s=600, cache_size=256, name="trace.jsonl"):
    """Message bodies (JSON text) the host engine sends for EVENTS (dicts, in time order)."""
    path = os.path.join(str(tmp_path), name)
    tracegen.write(events, path)
    bodies = []
    replay_host(path, int(window_s * 1000), cache_size, bodies.append, lambda line: None,
                agent=AGENT)
    return bodies


def periodic(name, items, t):
    """The message bodies the host engine sends for a periodic report (Baseline, SBoM)."""
    bodies = []
    engine = build_host_engine(256, lambda buf, n: bodies.append(bytes(buf[:n]).decode()),
                               lambda line: None, AGENT)
    engine.send_periodic(name, items, int(t * 1000))
    return bodies


def rules_file(tmp_path, rules=None, learning_s=None, name="rules.json"):
    data = {"rules": rules or []}
    if learning_s is not None:
        data["learning"] = {"duration_s": learning_s}
    path = os.path.join(str(tmp_path), name)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def live(message):
    """MESSAGE's arrival at the hub as a device sending live gives it: its own time."""
    return message_time(message, 0.0)


def evaluate(bodies, rules_path=None, device="dev1", mids=None, budget=None):
    """Alerts (dicts) after feeding BODIES as DEVICE's messages as they arrive from a live
    device, silence checked at the end; BUDGET: the engine's hourly alert budget if not its
    default."""
    engine = AlertEngine(load_rules(rules_path), **({"budget": budget} if budget else {}))
    for i, body in enumerate(bodies):
        properties = {"$.ct": "application/json"}
        if mids is not None:
            properties["$.mid"] = mids[i]
        message = read_message(body.encode(), properties)
        engine.feed(device, properties, message, live(message))
    engine.check_silence()
    return [a.as_dict() for a in engine.sorted_alerts()]


def of_rule(alerts, rule):
    return [a for a in alerts if a["rule"] == rule]


def quiet(hours=4.0, seed=1):
    return list(tracegen.quiet(seed=seed, duration=hours * 3600))


def login_failed(t, address, user="root"):
    return {"kind": "login", "t": round(t, 3), "operation": "LoginFailed", "pid": 4242,
            "user_name": user, "executable": "sshd", "remote_address": address}


def merged(*streams):
    return sorted((e for s in streams for e in s), key=lambda e: e["t"])

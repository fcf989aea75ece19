"""Incidents: the issue's attack story is one High incident whose timeline holds every step
and whose tactics cover them; routine administration after learning raises nothing above Low;
the CLI lists incidents by severity then recency, with the same ids each run."""
import json
import subprocess

from alert_helpers import evaluate, replay
from attack_story import ATTACK_RULES, ATTACKER, story
from hub_replays import MICROAGENT, replay_to_hub
from host_sim import tracegen
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.incidents import correlate
from host_sim.cloud.alerts.messages import read_message
from host_sim.cloud.alerts.rules import load_rules
from hub_emulator.process import HubProcess


def _alerts(bodies, device="victim"):
    engine = AlertEngine(load_rules())
    for body in bodies:
        engine.feed(device, {}, read_message(body.encode(), {}), 0.0)
    engine.check_silence()
    return list(engine.alerts.values())


def test_the_attack_story_is_one_high_incident_with_every_step(tmp_path):
    alerts = _alerts(replay(story(), tmp_path, window_s=600))
    rules = {a.rule for a in alerts}
    assert ATTACK_RULES <= rules
    incidents, membership = correlate(alerts)
    attack = [i for i in incidents if ATTACK_RULES & {a.rule for a in i.alerts}]
    assert len(attack) == 1
    incident = attack[0]
    assert incident.severity == "High" and incidents[0] is incident
    assert ATTACK_RULES <= {a.rule for a in incident.alerts}
    assert {"Credential Access", "Execution", "Impact", "Discovery"} <= set(incident.tactics)
    record = incident.as_dict()
    times = [step["time"] for step in record["timeline"]]
    assert times == sorted(times) and record["alerts"] == len(incident.alerts)
    assert record["timeline"][0]["rule"] == "brute-force"
    assert {membership[step["alert"]] for step in record["timeline"]} == {incident.id}


def test_routine_administration_after_learning_is_not_medium(tmp_path):
    alerts = _alerts(replay(story(with_attack=False, with_routine=True), tmp_path, window_s=600))
    assert [a.as_dict() for a in alerts if a.severity in ("High", "Medium")] == []
    assert correlate(alerts)[0] == []


def test_a_busy_gateway_day_raises_no_incident(tmp_path):
    events = list(tracegen.busy(duration=3 * 3600))
    alerts = evaluate(replay(events, tmp_path, window_s=600))
    assert [a for a in alerts if a["severity"] == "High"] == []


def test_incidents_cli_lists_the_attacked_device_only(tmp_path):
    trace = tmp_path / "story.jsonl"
    tracegen.write(story(), str(trace))
    quiet_trace = tmp_path / "quiet.jsonl"
    tracegen.write(story(with_attack=False, with_routine=True), str(quiet_trace))
    hub = HubProcess(tmp_path / "hub", port=0, plain_port=None)
    with hub:
        replay_to_hub(hub, "victim", trace, tmp_path)
        replay_to_hub(hub, "bystander", quiet_trace, tmp_path)
        runs = [subprocess.run([MICROAGENT, "incidents", "--data", str(hub.data_dir), "--json"],
                               capture_output=True, text=True, timeout=300) for _ in range(2)]
        table = subprocess.run([MICROAGENT, "incidents", "--data", str(hub.data_dir)],
                               capture_output=True, text=True, timeout=300)
        alerts = subprocess.run([MICROAGENT, "alerts", "--data", str(hub.data_dir), "--json"],
                                capture_output=True, text=True, timeout=300)
        store = str(tmp_path / "cloud.db")
        ingested = subprocess.run([MICROAGENT, "alerts", "--data", str(hub.data_dir), "--store",
                                   store, "--json"], capture_output=True, text=True, timeout=300)
        stored = subprocess.run([MICROAGENT, "incidents", "--store", store, "--json"],
                                capture_output=True, text=True, timeout=300)
    assert all(run.returncode == 0 for run in runs), runs[0].stderr
    assert alerts.returncode == 0 and ingested.returncode == 0 and stored.returncode == 0, (
        alerts.stderr + ingested.stderr + stored.stderr)
    alert_records = [json.loads(line) for line in alerts.stdout.splitlines()]
    alert_records = [r for r in alert_records if r["kind"] == "alert"]   # not recommendations
    for record in alert_records:
        assert {"device", "rule", "severity", "technique", "incident", "first", "last", "count",
                "evidence", "what_to_do"} <= set(record)
        assert isinstance(record["technique"], list)
        assert (record["incident"] is not None) == (record["severity"] in ("High", "Medium"))
    records = [json.loads(line) for line in runs[0].stdout.splitlines()]
    assert runs[0].stdout == runs[1].stdout          # same ids, same order
    assert {r["device"] for r in records} == {"victim"}
    assert records[0]["severity"] == "High"
    assert ATTACK_RULES <= {step["rule"] for r in records for step in r["timeline"]}
    assert table.returncode == 0 and "victim" in table.stdout and ATTACKER in table.stdout
    assert {r["incident"] for r in alert_records if r["incident"]} == {r["incident"] for r in records}
    # the store, written by the ingest, holds the same incidents
    from_store = [json.loads(line) for line in stored.stdout.splitlines()]
    assert [(r["incident"], r["severity"], r["alerts"]) for r in from_store] == [
        (r["incident"], r["severity"], r["alerts"]) for r in records]

"""Detection coverage: the attack corpus (tests/alerts/attack_corpus.py: several spellings per
technique, as typed and as an argv joined with spaces) and the stateful scenarios (download then
run across events, reconnaissance burst, outbound sweep, login after a brute force) replayed
through both engines, the firmware one inside MicroPython; per technique, the spellings caught by
the catalogue beside those a signature written for one spelling of each technique would catch.
Beside it, the benign samples' Medium and High alerts per device-day after the learning day."""
import os
import sys
import tempfile

from bench.report import progress, table
from host_sim import tracegen
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.messages import read_message
from host_sim.cloud.alerts.rules import load_rules
from host_sim.replay import replay_firmware, replay_host

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "alerts"))

from attack_corpus import ATTACKS, corpus_events, entries  # noqa: E402
from attack_story import attack, routine, story  # noqa: E402

START = tracegen.START
LEARNED = 86400.0


def _bodies(engine, events, directory):
    path = os.path.join(directory, "trace-%s.jsonl" % engine)
    tracegen.write(sorted(events, key=lambda e: e["t"]), path)
    bodies = []
    if engine == "host":
        replay_host(path, 600000, 1024, bodies.append, lambda line: None)
    else:
        code = replay_firmware(path, 600000, 1024, bodies.append, lambda line: None,
                               runtime="micropython", heap="4M")
        if code != 0:
            raise RuntimeError("firmware replay exited %d" % code)
    return [b if isinstance(b, str) else b.decode() for b in bodies]


def _alerts(bodies, rules):
    engine = AlertEngine(rules)
    for body in bodies:
        engine.feed("bench", {}, read_message(body.encode(), {}), 0.0)
    engine.check_silence()
    return list(engine.alerts.values())


def _caught(alerts):
    return {(a.rule, e.get("commandline")) for a in alerts for e in a.evidence
            if isinstance(e, dict)}


def _one_spelling(expected):
    """The baseline: a rule written for one spelling of each technique (the first three words
    of its first spelling, as a substring), as a signature list would be."""
    patterns = {}
    for rule, spellings in ATTACKS.items():
        line, _ = next(iter(entries(spellings)))
        patterns[rule] = " ".join(line.split()[:3])
    return {(rule, form) for rule, form in expected if patterns[rule] in form}


def run():
    catalogue = load_rules()
    directory = tempfile.mkdtemp(prefix="detections-bench-")
    learning = list(tracegen.quiet(duration=LEARNED + 600))
    corpus, expected = corpus_events(START + LEARNED + 3600)
    rows = {}
    stateful = {}
    for engine in ("host", "firmware"):
        progress("detections bench: the corpus through the %s engine" % engine)
        bodies = _bodies(engine, learning + corpus, directory)
        caught = _caught(_alerts(bodies, catalogue))
        for rule, form in expected:
            row = rows.setdefault(rule, {"total": 0, "baseline": 0})
            row[engine] = row.get(engine, 0) + ((rule, form) in caught)
    baseline = _one_spelling(expected)
    for rule, form in expected:
        rows[rule]["total"] += 1
        rows[rule]["baseline"] += (rule, form) in baseline
    for engine in ("host", "firmware"):
        progress("detections bench: the attack story through the %s engine" % engine)
        story_alerts = _alerts(_bodies(engine, story(), directory), catalogue)
        stateful[engine] = {a.rule for a in story_alerts}
    techniques = {r["id"]: ", ".join(r.get("technique", [])) for r in catalogue.rules}
    out = []
    for rule, row in rows.items():
        out.append([rule, techniques.get(rule, ""), "%d/%d" % (row["host"], row["total"]),
                    "%d/%d" % (row["firmware"], row["total"]),
                    "%d/%d" % (row["baseline"], row["total"])])
    for rule in ("brute-force", "successful-brute-force", "download-then-run", "outbound-sweep",
                 "reverse-shell", "crypto-miner"):
        out.append([rule + " (attack story)", techniques.get(rule, ""),
                    "yes" if rule in stateful["host"] else "NO",
                    "yes" if rule in stateful["firmware"] else "NO", "-"])
    table("Detections: spellings caught per technique by the catalogue (facts of the command "
          "line), against a signature written for one spelling of each (baseline)",
          ["detection", "ATT&CK", "host engine", "firmware engine", "one-spelling signature"],
          out)

    progress("detections bench: benign samples")
    benign = {"quiet sensor, 2 days": list(tracegen.quiet(duration=2 * 86400)),
              "busy gateway, 2 days at 2 events/s": list(tracegen.busy(duration=2 * 86400,
                                                                         rate=2.0)),
              "busy gateway, 30 h at 20 events/s (its cache floods)": list(
                  tracegen.busy(duration=30 * 3600)),
              "routine administration": story(with_attack=False, with_routine=True)}
    out = []
    for name, events in benign.items():
        alerts = _alerts(_bodies("host", events, directory), catalogue)
        span_days = max(1.0, (events[-1]["t"] - events[0]["t"] - LEARNED) / 86400.0)
        loud = [a for a in alerts if a.severity in ("High", "Medium") and a.first >= START + LEARNED]
        low = [a for a in alerts if a.severity not in ("High", "Medium") and a.first >= START + LEARNED]
        out.append([name, round(len(loud) / span_days, 2), round(len(low) / span_days, 2),
                    ", ".join(sorted({a.rule for a in loud})) or "-"])
    table("Benign samples: alerts per device-day after the learning day (catalogue on)",
          ["sample", "High+Medium per day", "Low per day", "rules that fired (High+Medium)"], out)
    assert attack and routine   # the story's parts are what story() composes


if __name__ == "__main__":
    run()

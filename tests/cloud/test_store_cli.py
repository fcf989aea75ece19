"""`microagent alerts` with the cloud store: the emulator's store evaluated into it (a re-run
continues and duplicates nothing), what it holds printed with filters, --store alone reading
$MICROAGENT_STORE, and one-line errors that never show a password."""
import json
import os
import subprocess

import pytest

from host_sim.cloud.store import open_store

from alert_helpers import START, rules_file
from hub_fill import ATTACKER, add, attacked_bodies, filled
from hub_replays import MICROAGENT

SECOND = "198.51.100.23"


def _run(*args, env=None, code=0):
    done = subprocess.run([MICROAGENT, "alerts"] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == code, done.stderr
    return done


def _json(done):
    """The alert lines (recommendations, listed after them, are tested in test_recommendations)."""
    return [r for r in map(json.loads, done.stdout.splitlines()) if r["kind"] == "alert"]


@pytest.fixture
def hub(tmp_path):
    return filled(tmp_path)


def test_hub_into_the_store_twice_duplicates_nothing_and_continues(hub, tmp_path):
    db = tmp_path / "cloud.db"
    first = _json(_run("--data", hub, "--store", db, "--json", "--commit-every", "5"))
    assert [(a["device"], a["rule"], a["key"], a["count"]) for a in first
            if a["rule"] == "brute-force"] == [("attacked", "brute-force", ATTACKER, 15)]
    stored = _json(_run("--store", db, "--json"))
    assert sorted((a["device"], a["rule"], a["key"], a["count"]) for a in stored) == sorted(
        (a["device"], a["rule"], a["key"], a["count"]) for a in first)
    again = _run("--data", hub, "--store", db)
    assert again.stdout.splitlines()[-1] == "0 alerts raised or updated from 0 messages"
    assert _json(_run("--store", db, "--json")) == stored
    # a second burst arrives later: only the new messages are read
    add(hub, "attacked", attacked_bodies(tmp_path, SECOND, START + 3 * 3600, "second.jsonl")[-8:])
    third = _json(_run("--data", hub, "--store", db, "--json"))
    assert [(a["key"], a["count"]) for a in third if a["rule"] == "brute-force"] == [(SECOND, 15)]
    after = {(a["device"], a["rule"], a["key"]): a["count"] for a in _json(_run("--store", db, "--json"))}
    assert after[("attacked", "brute-force", ATTACKER)] == 15
    assert after[("attacked", "brute-force", SECOND)] == 15
    store = open_store(str(db))
    try:
        assert store.device_row("broken")["skipped"] == 1
        assert store.positions("hub", [0])[0] == 1 + max(
            r[0] for r in __import__("sqlite3").connect(os.path.join(hub, "hub.db")).execute(
                "SELECT id FROM messages"))
    finally:
        store.close()


def test_printing_and_filters(hub, tmp_path):
    db = tmp_path / "cloud.db"
    tags = tmp_path / "tags.json"
    tags.write_text('{"att*": ["lab", "exposed"], "*": ["fleet"]}')
    _run("--data", hub, "--store", db, "--tags", tags, "--rules", rules_file(tmp_path, learning_s=3600))
    everything = _json(_run("--store", db, "--json"))
    assert len({a["rule"] for a in everything}) >= 2 and {a["device"] for a in everything} >= {"attacked"}

    def chosen(*args):
        return sorted(a["id"] for a in _json(_run("--store", db, "--json", *args)))

    def expected(keep):
        return sorted(a["id"] for a in everything if keep(a))
    assert chosen("--severity", "High") == expected(lambda a: a["severity"] == "High") != []
    assert chosen("--rule", "brute-force") == expected(lambda a: a["rule"] == "brute-force") != []
    assert chosen("--device", "att*") == expected(lambda a: a["device"].startswith("att"))
    assert chosen("--device", "nothing*") == []
    middle = sorted(a["first"] for a in everything)[len(everything) // 2]
    assert chosen("--until", middle) == expected(lambda a: a["first"] <= middle)
    assert chosen("--since", middle) == expected(lambda a: a["last"] >= middle)
    table = _run("--store", db, "--rule", "brute-force").stdout.splitlines()
    assert table[0].split()[:4] == ["SEVERITY", "DEVICE", "RULE", "FIRST"]
    assert ATTACKER in table[1] and table[-1].startswith("1 alert and ")
    store = open_store(str(db))
    try:
        assert store.device_row("attacked")["tags"] == ["exposed", "fleet", "lab"]
        assert store.device_row("quiet")["tags"] == ["fleet"]
    finally:
        store.close()


def test_store_alone_reads_the_environment_and_the_password_never_shows(postgres_server, hub):
    dsn = postgres_server.create_database("cli_env")
    env = dict(os.environ, MICROAGENT_STORE=dsn)
    _run("--data", hub, "--store", env=env)
    assert any(a["rule"] == "brute-force" for a in _json(_run("--store", "--json", env=env)))
    wrong = dict(os.environ, MICROAGENT_STORE=postgres_server.dsn("cli_env", "wrong-s3cret"))
    done = _run("--store", env=wrong, code=2)
    assert done.stderr.startswith("microagent: error: store postgresql://microagent:***@")
    assert len(done.stderr.strip().splitlines()) == 1 and "s3cret" not in done.stderr


@pytest.mark.parametrize("args,error", [
    (["--store"], "--store needs a DSN (or $MICROAGENT_STORE)"),
    ([], "give a source (--data, --broker or --kafka), or --store to print what it holds"),
    (["--kafka", "127.0.0.1:9092", "--topic", "t", "--group", "g"],
     "--kafka needs --topic, --group and --store"),
    (["--data", "/nowhere", "--severity", "High"],
     "--severity filters what --store holds: give it without a source"),
    (["--store", "x.db", "--since", "yesterday"], "--since yesterday: expected an ISO 8601 time"),
    (["--store", "missing.db"], "--store missing.db: no such store"),
    (["--store", "x.db", "--data", "/nowhere", "--tags", "/no/tags.json"],
     "--tags /no/tags.json: "),
])
def test_usage_errors_are_one_line(tmp_path, args, error):
    env = {k: v for k, v in os.environ.items() if k != "MICROAGENT_STORE"}
    done = subprocess.run([MICROAGENT, "alerts"] + args, capture_output=True, text=True,
                          timeout=60, env=env, cwd=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("microagent: error: ") and error in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_follow_into_the_store_reports_as_messages_arrive_and_commits_at_exit(tmp_path):
    from hub_replays import Lines
    hub = os.path.join(str(tmp_path), "hub")
    os.makedirs(hub)
    add(hub, "placeholder", [b"{}"])   # the hub store exists before the follower opens it
    db = tmp_path / "cloud.db"
    follower = subprocess.Popen([MICROAGENT, "alerts", "--data", hub, "--store", str(db),
                                 "--follow", "--json"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        Lines(follower.stderr).wait_for(lambda line: "following" in line, 30)
        add(hub, "attacked", attacked_bodies(tmp_path))
        alert = json.loads(Lines(follower.stdout).wait_for(lambda line: '"brute-force"' in line, 60))
        assert (alert["status"], alert["device"], alert["key"]) == ("new", "attacked", ATTACKER)
    finally:
        follower.terminate()
        assert follower.wait(timeout=30) == 0
    store = open_store(str(db))
    try:
        [stored] = store.alerts(rule="brute-force")
        assert (stored["device"], stored["count"]) == ("attacked", 15)
        assert store.device_row("placeholder")["skipped"] == 1
    finally:
        store.close()

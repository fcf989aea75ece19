"""`microagent outbox`: an admin's view of the host agent's SQLite outbox, read while it is open."""
import json
import os
import subprocess
import sys
import time

from host_sim.outbox import SqliteOutbox

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")


def outbox(*args):
    return subprocess.run([MICROAGENT, "outbox"] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=60)


def test_counts_what_waits_what_went_and_what_expired(tmp_path):
    path = str(tmp_path / "outbox.db")
    now = time.time()
    box = SqliteOutbox(path, timeout_min=60)
    box.put(b"x" * 100, now=now - 7200)  # older than the timeout: expires
    box.put(b"y" * 300, now=now - 600)
    box.put(b"z" * 50, now=now - 30)
    box.put(b"w" * 10, now=now)
    assert box.expire(now=now) == 1
    box.delete(box.pending()[-1][0])  # the newest was acknowledged
    try:  # the agent still has it open
        proc = outbox("--outbox", path, "--json")
        assert proc.returncode == 0, proc.stderr
        state = json.loads(proc.stdout)
        assert {k: state[k] for k in ("pending", "bytes", "delivered", "expired")} == \
            {"pending": 2, "bytes": 350, "delivered": 1, "expired": 1}
        assert 600 <= state["oldest_age_s"] < 700
        table = outbox("--outbox", path).stdout.splitlines()
        assert table[1].split() == ["waiting", "2"] and table[3].split() == ["oldest", "waiting", "10", "min"]
    finally:
        box.close()


def test_a_missing_or_foreign_file_is_a_clear_error(tmp_path):
    proc = outbox("--outbox", tmp_path / "none.db")
    assert proc.returncode == 2
    assert proc.stderr.startswith("microagent: error: no outbox at %s" % (tmp_path / "none.db"))
    assert not (tmp_path / "none.db").exists()  # looking does not create it
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a database\n" * 100)
    proc = outbox("--outbox", foreign)
    assert proc.returncode == 2
    assert proc.stderr == "microagent: error: %s is not a microagent outbox (file is not a database)\n" % foreign

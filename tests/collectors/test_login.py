import os
import subprocess
import time

import pytest

from collector_fixtures import fixture_path
from host_sim.collectors.follow import FollowedFile
from host_sim.collectors.login import (LoginCollector, RECORD_SIZE, parse_auth_line, parse_utmp,
                                       syslog_time)
from polling import wait_for


def run(root, **options):
    events = []
    collector = LoginCollector(events.append, root=root, from_start=True, **options)
    collector.open()
    collector.poll()
    collector.close()
    return collector, events


def summary(events):
    return [(e["operation"], e["pid"], e["user_name"], e["executable"], e["remote_address"])
            for e in events]


def test_wtmp_and_btmp():
    collector, events = run(fixture_path("login_tree"))
    assert collector.method == "Utmp"
    assert summary(events) == [
        ("Login", 612, "root", "tty1", "127.0.0.1"),
        ("Login", 4242, "alice", "pts/0", "192.0.2.10"),
        ("Login", 4300, "bob", "pts/1", "2001:db8::7"),
        ("Logout", 4242, "alice", "pts/0", "192.0.2.10"),      # user from the matching login
        ("Logout", 612, "root", "tty1", "127.0.0.1"),
        ("LoginFailed", 5001, "admin", "ssh:notty", "198.51.100.9"),
        ("LoginFailed", 5002, "root", "ssh:notty", "198.51.100.9"),
        ("LoginFailed", 612, "UNKNOWN", "tty1", "127.0.0.1"),
    ]
    assert events[0]["t"] == pytest.approx(1795770060.25)
    assert all(e["kind"] == "login" for e in events)


def test_corrupted_wtmp_records_are_skipped_and_counted():
    collector, events = run(fixture_path("login_corrupt"))
    assert collector.stats["corrupt"] == 4
    assert summary(events) == [
        ("Login", 4242, "alice", "pts/0", "192.0.2.10"),
        ("Login", 4, "m\ufffdlanie", "pts/6\ufffd", "127.0.0.1"),
        ("Logout", 4242, "alice", "pts/0", "192.0.2.10"),
    ]


def test_trailing_partial_record_waits_for_the_rest(tree):
    root = tree("login_tree")
    wtmp = os.path.join(root, "var/log/wtmp")
    whole = open(wtmp, "rb").read()
    with open(wtmp, "wb") as f:
        f.write(whole[:RECORD_SIZE * 3 + 100])
    events = []
    collector = LoginCollector(events.append, root=root, from_start=True)
    collector.open()
    collector.poll()
    logins = lambda: [e["pid"] for e in events if e["operation"] != "LoginFailed"]   # noqa: E731
    assert logins() == [612]                     # boot, LOGIN_PROCESS, root's login; then a part
    with open(wtmp, "ab") as f:
        f.write(whole[RECORD_SIZE * 3 + 100:])
    collector.poll()
    assert logins() == [612, 4242, 4300, 4242, 612]


def test_logout_of_a_session_open_before_start_names_the_user(tree):
    """utmp holds the sessions open at start; a later DEAD_PROCESS in wtmp is their logout."""
    root = tree("login_tree")
    records = open(os.path.join(root, "var/log/wtmp"), "rb").read()
    events = []
    collector = LoginCollector(events.append, root=root)            # from the end, as the agent
    collector.open()
    assert collector.poll() == 0
    logout_bob = bytearray(records[4 * RECORD_SIZE:5 * RECORD_SIZE])  # bob's login record ...
    logout_bob[0:2] = (8).to_bytes(2, "little")                        # ... turned DEAD_PROCESS
    logout_bob[44:76] = bytes(32)                                      # with no user name
    with open(os.path.join(root, "var/log/wtmp"), "ab") as f:
        f.write(bytes(logout_bob))
    collector.poll()
    assert summary(events) == [("Logout", 4300, "bob", "pts/1", "2001:db8::7")]


def test_auth_log_sshd_lines():
    collector, events = run(fixture_path("authlog_tree"))
    assert collector.method == "Syslog"
    assert summary(events) == [
        ("Login", 5100, "alice", "sshd", "192.0.2.10"),
        ("LoginFailed", 5200, "oracle", "sshd", "198.51.100.9"),
        ("LoginFailed", 5201, "root", "sshd", "198.51.100.9"),
        ("Login", 5300, "bob", "sshd", "::1"),            # the IPv6 loopback, as utmp has it
        ("Logout", 5100, "alice", "sshd", "192.0.2.10"),
        ("Login", 5400, "carol", "sshd", "203.0.113.5"),
        ("LoginFailed", 5401, "dave", "sshd", "2001:db8::99"),
        ("Login", 5600, "erin", "sshd", "192.0.2.77"),
    ]
    assert events[5]["t"] == pytest.approx(1795772460.123456)


def test_syslog_time_without_year_is_never_far_in_the_future():
    now = time.mktime((2027, 1, 2, 0, 0, 0, 0, 0, -1))
    december = syslog_time("Dec 31 23:59:00", now)
    assert time.localtime(december).tm_year == 2026
    assert time.localtime(syslog_time("Jan  1 10:00:00", now)).tm_year == 2027


def test_unparseable_auth_lines_give_nothing():
    assert parse_auth_line("Feb 30 10:00:00 h sshd[1]: Accepted password for x from 1.2.3.4 port 1 ssh2",
                           time.time()) is None
    assert parse_auth_line("", time.time()) is None


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="Auto, Utmp or Syslog"):
        LoginCollector(print, method="PAM")


# -- incremental reads ---------------------------------------------------------------------------
def test_followed_file_survives_rotation_and_truncation(tmp_path):
    path = tmp_path / "auth.log"
    path.write_bytes(b"old history\n")
    followed = FollowedFile(str(path))                      # from the end
    assert followed.read() == [b""]
    with open(path, "ab") as f:
        f.write(b"one\ntw")
    (data,) = followed.read()
    followed.keep(data[data.rfind(b"\n") + 1:])
    assert data == b"one\ntw"
    with open(path, "ab") as f:
        f.write(b"o\nlast line of the old file\n")
    os.rename(path, tmp_path / "auth.log.1")                # logrotate
    path.write_bytes(b"first of the new file\n")
    assert followed.read() == [b"two\nlast line of the old file\n", b"first of the new file\n"]
    path.write_bytes(b"")                                   # copytruncate
    path.write_bytes(b"after truncation\n")
    assert followed.read() == [b"after truncation\n"]
    followed.close()


def test_file_created_after_start_is_read_from_its_beginning(tmp_path):
    followed = FollowedFile(str(tmp_path / "btmp"))
    assert followed.read() == []
    (tmp_path / "btmp").write_bytes(b"x" * 10)
    assert followed.read() == [b"x" * 10]


def test_wtmp_written_by_util_linux_is_parsed(tmp_path):
    """utmpdump -r (util-linux) writes real glibc records: the layout matches ours."""
    text = ("[7] [31337] [ts/4] [zoe     ] [pts/4       ] [192.0.2.200         ] "
            "[192.0.2.200    ] [2026-11-27T10:00:00,500000+00:00]\n")
    out = subprocess.run(["utmpdump", "-r"], input=text.encode(), capture_output=True, check=True)
    assert len(out.stdout) == RECORD_SIZE
    (record,) = parse_utmp(out.stdout)
    assert (record.type, record.pid, record.line, record.user, record.address) == \
        (7, 31337, "pts/4", "zoe", "192.0.2.200")
    assert record.t == pytest.approx(1795773600.5)


def test_a_failing_poll_is_counted_and_logged_once_and_the_thread_goes_on(tree, caplog):
    root = tree("authlog_tree")
    events = []
    collector = LoginCollector(events.append, root=root, from_start=True, poll_interval=0.05)
    collector.start()
    try:
        wait_for(lambda: len(events) >= 8, 5)
        collector.method = "Broken"         # make every poll fail: _auth_lines is not reached
        collector._files = None
        wait_for(lambda: collector.stats.get("errors", 0) >= 2, 5)
        assert collector._thread.is_alive()
    finally:
        collector._files = {}
        collector.stop()
    assert len(events) == 8
    assert collector.stats["errors"] >= 2
    assert len([r for r in caplog.records if "poll failed" in r.getMessage()]) == 1


def test_remote_addresses_are_ip_addresses_or_left_out():
    from host_sim.collectors.login import remote_address
    import socket
    mapped = socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.33")
    assert remote_address("", mapped) == "192.0.2.33"
    assert remote_address("gateway.example.com", bytes(16)) is None
    assert remote_address(":0", bytes(16)) == "127.0.0.1"
    assert remote_address("2001:db8::5", bytes(16)) == "2001:db8::5"
    event = parse_auth_line("Nov 27 09:31:10 gw sshd[5]: Accepted password for a from "
                            "client.example.com port 22 ssh2", time.time())
    assert "remote_address" not in event and event["user_name"] == "a"

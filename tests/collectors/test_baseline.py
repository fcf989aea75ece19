import json
import os
import re

import pytest

from host_sim.collectors import baseline
from needs_root import skip_unless_root

EXPECTED_NOT_PASSING = {
    # id: (result, reason fragment)
    "Access-5.1.2": ("Fail", "ssh_host_ed25519_key has mode 0644 (at most 0600)"),
    "Access-5.1.7": ("Fail", "ClientAliveInterval is 0"),           # sshd's default
    "Access-5.1.14": ("Fail", "LogLevel is DEBUG3"),
    "Access-5.4.1.3": ("Fail", "PASS_WARN_AGE is 5"),
    "Access-5.4.2.1": ("Fail", "toor"),
    "Access-7.2.1": ("Fail", "bob"),
    "Access-7.2.2": ("Fail", "alice"),
    "Access-7.2.3": ("Fail", "bob (gid 1234)"),
    "Access-7.2.4": ("Fail", "member alice"),
    "Access-7.2.5": ("Fail", "duplicate 0"),
    "Access-7.2.8": ("Fail", "duplicate users"),
    "FilePermissions-7.1.7": ("Error", "/etc/gshadow not found"),
    "FilePermissions-7.1.9": ("Fail", "/etc/shells has mode 0666"),
    "Filesystem-1.1.1.6": ("Fail", "module squashfs is loaded"),
    "Filesystem-1.1.1.7": ("Fail", "not deny-listed"),
    "Filesystem-1.1.1.8": ("Fail", "can still be loaded"),
    "Filesystem-1.1.2.2.4": ("Fail", "/dev/shm is mounted without noexec"),
    "Logging-6.1.2.3": ("Fail", "Compress is no"),                 # the drop-in wins
    "Logging-6.2.1.1": ("Fail", "not installed: audispd-plugins"),
    "Logging-6.2.1.4": ("Fail", "audit_backlog_limit=1024"),
    "Network-3.3.1": ("Fail", "net.ipv4.ip_forward = 1"),
    "Network-3.3.5": ("Fail", "net.ipv4.conf.default.accept_redirects = 1"),
    "ProcessHardening-1.5.2": ("Error", "/proc/sys/kernel/yama/ptrace_scope not found"),
    "Services-2.1.2": ("Fail", "enabled: avahi-daemon.service"),
    "Services-2.2.4": ("Fail", "installed: telnet"),
}


@pytest.fixture
def root(tree):
    """The fixture system, with the file modes git does not keep."""
    skip_unless_root("the fixture system's files owned by root, as the CIS checks expect")
    path = tree("baseline_tree")
    for name, mode in (("etc/passwd", 0o644), ("etc/passwd-", 0o644), ("etc/group", 0o644),
                       ("etc/shadow", 0o640), ("etc/shells", 0o666), ("etc/login.defs", 0o644),
                       ("etc/ssh/sshd_config", 0o600), ("etc/ssh/ssh_host_ed25519_key", 0o644),
                       ("etc/ssh/ssh_host_ed25519_key.pub", 0o644)):
        os.chmod(os.path.join(path, name), mode)
    return path


def test_every_result_on_the_fixture_system(root):
    results = baseline.run_checks(root)
    not_passing = {r.check["check_id"][len("CIS-debian-12-"):]: (r.result, r.reason)
                   for r in results if r.result != "Pass"}
    assert set(not_passing) == set(EXPECTED_NOT_PASSING)
    for check_id, (result, fragment) in EXPECTED_NOT_PASSING.items():
        assert not_passing[check_id][0] == result, check_id
        assert fragment in not_passing[check_id][1], check_id


def test_collect_sends_only_fail_and_error_items(root):
    items = baseline.collect(root)
    assert len(items) == len(EXPECTED_NOT_PASSING)
    for item in items:
        assert set(item) == {"check_id", "check_result", "error", "description", "remediation",
                             "severity"}
        assert item["check_result"] in ("Fail", "Error")
        assert (item["error"] != "") == (item["check_result"] == "Error")
        assert item["description"] and item["remediation"]


def test_disabled_checks_and_groups(root):
    items = baseline.collect(root, checks_disabled="CIS-debian-12-Access-5.1.7, 7.2.5",
                             groups_disabled=["Services", "Network"])
    ids = {i["check_id"] for i in items}
    assert "CIS-debian-12-Access-5.1.7" not in ids and "CIS-debian-12-Access-7.2.5" not in ids
    assert not any("-Services-" in i or "-Network-" in i for i in ids)
    assert len(items) == len(EXPECTED_NOT_PASSING) - 2 - 2 - 2


def test_ssh_checks_do_not_apply_without_sshd(root):
    os.remove(os.path.join(root, "etc/ssh/sshd_config"))
    results = {r.check["check_id"]: r.result for r in baseline.run_checks(root)}
    assert results["CIS-debian-12-Access-5.1.20"] == "NotApplicable"
    assert not any(i["check_id"].startswith("CIS-debian-12-Access-5.1.")
                   for i in baseline.collect(root))


def test_unreadable_or_missing_sources_are_errors_not_crashes(tmp_path):
    results = baseline.run_checks(str(tmp_path))            # an empty system
    assert results and all(r.result in ("Error", "NotApplicable", "Pass", "Fail") for r in results)
    errors = {r.check["check_id"]: r.reason for r in results if r.result == "Error"}
    assert errors["CIS-debian-12-Services-2.2.4"] == \
        "no package database (dpkg or opkg status) to check packages in"
    assert errors["CIS-debian-12-Network-3.3.1"] == "/proc/sys/net/ipv4/ip_forward not found"
    assert errors["CIS-debian-12-Filesystem-1.1.2.1.1"] == "/proc/mounts not found"


def test_bad_check_data_is_an_error_with_the_reason(tmp_path):
    (tmp_path / "broken.json").write_text(json.dumps({
        "group": "Broken", "benchmark": "debian-12", "checks": [
            {"id": "9.9.1", "description": "d", "remediation": "r", "severity": "Low",
             "test": {"type": "no_such_test"}},
            {"id": "9.9.2", "description": "d", "remediation": "r", "severity": "Low",
             "test": {"type": "sysctl"}},
            {"id": "9.9.3", "description": "d", "remediation": "r", "severity": "Low",
             "test": {"type": "accounts", "rule": "no_such_rule"}}]}))
    checks = baseline.load_checks(str(tmp_path))
    results = {r.check["check_id"]: r for r in baseline.run_checks(str(tmp_path), checks)}
    assert results["CIS-debian-12-Broken-9.9.1"].reason == "unknown test type 'no_such_test' in the check data"
    assert results["CIS-debian-12-Broken-9.9.2"].reason == "KeyError: 'keys'"
    assert "unknown accounts rule" in results["CIS-debian-12-Broken-9.9.3"].reason
    assert {r.result for r in results.values()} == {"Error"}


def test_check_data_is_complete_and_cis_formatted():
    checks = baseline.load_checks()
    assert len(checks) >= 30
    ids = [c["check_id"] for c in checks]
    assert len(ids) == len(set(ids))
    groups = {c["group"] for c in checks}
    assert groups >= {"Filesystem", "Services", "Network", "Logging", "Access", "FilePermissions"}
    for c in checks:
        assert re.fullmatch(r"CIS-debian-12-[A-Za-z]+-\d+(\.\d+)+", c["check_id"]), c["check_id"]
        assert c["test"]["type"] in baseline.TESTS, c["check_id"]
        assert c["description"].startswith("Ensure "), c["check_id"]
        assert c["remediation"] and c["severity"] in ("High", "Medium", "Low")


def test_live_run_on_this_machine():
    results = baseline.run_checks("/")
    assert all(r.result in ("Pass", "Fail", "Error", "NotApplicable") for r in results)
    errors = [r for r in results if r.result == "Error"]
    # what can fail to run here is only a kernel facility this machine lacks
    assert all("not found" in r.reason for r in errors), [(r.check["check_id"], r.reason) for r in errors]
    values = []
    for name in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
        if os.path.exists(name):
            with open(name) as f:
                values.append(f.read().strip())
    forward = next(r for r in results if r.check["check_id"] == "CIS-debian-12-Network-3.3.1")
    assert (forward.result == "Pass") == (values and set(values) == {"0"})


def test_baseline_command_table_and_json(root, capsys):
    from host_sim.cli import main
    assert main(["baseline", "--root", root, "--groups-disabled", "Access,Filesystem"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["check", "result", "severity", "finding"]
    assert out[1].startswith("CIS-debian-12-FilePermissions-7.1.9  ")
    assert "Fail" in out[1] and out[1].endswith("/etc/shells has mode 0666 (at most 0644)")
    assert not any("-Access-" in line or "-Filesystem-" in line for line in out)
    assert out[-1] == "56 checks: 8 failed, 2 errors, 46 passed, 0 not applicable"
    assert main(["baseline", "--root", root, "--format", "json",
                 "--checks-disabled", "7.1.7"]) == 0
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(items) == len(EXPECTED_NOT_PASSING) - 1
    assert main(["baseline", "--root", os.path.join(root, "missing")]) == 2
    assert "--root" in capsys.readouterr().err

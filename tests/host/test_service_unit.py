"""tools/systemd/microagent.service: systemd accepts it, its command line is one `run` accepts
(with a CA file Debian ships), and its sandbox scores at most 3.0 in systemd-analyze security.
(No systemd runs as PID 1 on the development machines: the unit is checked, not started; the
capabilities it grants are exercised by test_least_privilege.py.)"""
import os
import re
import shlex
import subprocess

from host_sim.cli import build_parser

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(REPO, "tools", "systemd", "microagent.service")
INSTALLED = "/usr/bin/microagent"  # where the Debian package puts the CLI
VENV_CLI = os.path.join(REPO, ".venv", "bin", "microagent")


def _unit_here(tmp_path):
    """The unit with this checkout's CLI in place of the installed one."""
    with open(UNIT) as f:
        text = f.read()
    assert "ExecStart=" + INSTALLED + " run " in text
    path = tmp_path / "microagent.service"
    path.write_text(text.replace(INSTALLED, VENV_CLI))
    return path, text


def test_systemd_accepts_the_unit(tmp_path):
    path, _ = _unit_here(tmp_path)
    # --man=no: the unit's Documentation= page comes with the package (tests/host/test_deb.py
    # checks it there), not with this machine.
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_the_unit_runs_a_command_line_run_accepts(tmp_path):
    _, text = _unit_here(tmp_path)
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start[len("ExecStart="):])
    assert argv[0] == INSTALLED
    args = build_parser().parse_args(argv[1:])
    assert args.once is False and args.output is None  # runs for good, sends
    assert os.path.isfile(args.ca), args.ca
    assert args.config == "/etc/microagent/microagent.json"
    assert "MICROAGENT_CONNECTION_STRING" not in exec_start  # the key stays in the env file
    assert "EnvironmentFile=-/etc/microagent/microagent.env" in text


def test_the_sandbox_scores_at_most_3(tmp_path):
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", UNIT],
                          capture_output=True, text=True)
    score = re.search(r"Overall exposure level for microagent.service: ([0-9.]+)", proc.stdout)
    assert score, proc.stdout + proc.stderr
    assert float(score.group(1)) <= 3.0, proc.stdout


def test_runs_as_its_own_user_with_the_documented_capabilities_only():
    with open(UNIT) as f:
        settings = dict(line.split("=", 1) for line in f.read().splitlines()
                        if "=" in line and not line.startswith("#"))
    assert settings["User"] == "microagent" and settings["NoNewPrivileges"] == "yes"
    ambient = settings["AmbientCapabilities"].split()
    assert settings["CapabilityBoundingSet"].split() == ambient
    with open(os.path.join(REPO, "docs", "collectors.md")) as f:
        granted = f.read().split("\n## Privileges\n")[1].split("\n### Not granted")[0]
    documented = set(re.findall(r"`(CAP_[A-Z_]+)`", granted))
    assert set(ambient) == documented

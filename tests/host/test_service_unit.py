"""tools/systemd/microagent.service: systemd accepts it, and its command line is one `run`
accepts, with a CA file Debian ships."""
import os
import shlex
import subprocess

from host_sim.cli import build_parser

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(REPO, "tools", "systemd", "microagent.service")
INSTALLED = "/opt/microagent"  # where the unit expects the checkout


def _unit_here(tmp_path):
    """The unit with this checkout in place of /opt/microagent."""
    with open(UNIT) as f:
        text = f.read()
    assert INSTALLED + "/.venv/bin/microagent run " in text
    path = tmp_path / "microagent.service"
    path.write_text(text.replace(INSTALLED, REPO))
    return path, text


def test_systemd_accepts_the_unit(tmp_path):
    path, _ = _unit_here(tmp_path)
    proc = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_the_unit_runs_a_command_line_run_accepts(tmp_path):
    _, text = _unit_here(tmp_path)
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start[len("ExecStart="):])
    assert argv[0] == INSTALLED + "/.venv/bin/microagent"
    args = build_parser().parse_args(argv[1:])
    assert args.once is False and args.output is None  # runs for good, sends
    assert os.path.isfile(args.ca), args.ca
    assert "MICROAGENT_CONNECTION_STRING" not in exec_start  # the key stays in the env file
    assert "EnvironmentFile=/etc/microagent/microagent.env" in text

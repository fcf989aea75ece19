"""microagent installed as users install it: a wheel built from a copy of the working tree,
installed with pip into a fresh venv, its commands run from a folder that is not the checkout,
with a home and a cache of their own. What they print is checked against the checkout's own
`replay` and against the bundled sample's known figures."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from message_rows import without_ids

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = os.path.join(REPO, "tests", "fixtures", "traces", "quiet-device.jsonl")
CHECKOUT_MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")


def _copy_of_the_working_tree(dest):
    """The files git would commit now (tracked or new, not ignored): no build/ leftovers, and
    symlinks copied as the files they point to, as an sdist would."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = os.path.join(REPO, relative)
        if os.path.isfile(source):  # a tracked file deleted in the working tree is skipped
            os.makedirs(os.path.dirname(os.path.join(dest, relative)), exist_ok=True)
            shutil.copy(source, os.path.join(dest, relative))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, env, cwd): the wheel installed in a fresh venv; env without the checkout's venv or
    any PYTHONPATH, with HOME and XDG_CACHE_HOME in a temporary folder; cwd an empty folder."""
    root = tmp_path_factory.mktemp("installed")
    source, wheels, venv = root / "source", root / "wheels", root / "venv"
    _copy_of_the_working_tree(source)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
                    "-w", str(wheels), str(source)], check=True, capture_output=True, timeout=600)
    (wheel,) = wheels.glob("microagent-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                          str(wheel)], capture_output=True, text=True, timeout=1200)
    assert pip.returncode == 0, pip.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(HOME=str(root / "home"), XDG_CACHE_HOME=str(root / "cache"))
    cwd = root / "elsewhere"
    cwd.mkdir()
    shutil.copy(SAMPLE, cwd / "quiet-device.jsonl")
    return venv, env, cwd


def run(installed, *args, timeout=300):
    venv, env, cwd = installed
    return subprocess.run([str(venv / "bin" / "microagent")] + list(args), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_the_installed_packages_come_from_the_venv_not_the_checkout(installed):
    venv, env, cwd = installed
    proc = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import host_sim, hub_emulator, microagent\n"
                           "for m in (host_sim, hub_emulator, microagent): print(m.__file__)"],
                          cwd=cwd, env=env, capture_output=True, text=True, check=True)
    site = str(venv / "lib")
    for path in proc.stdout.split():
        assert path.startswith(site) and REPO not in path, proc.stdout


def test_replay_from_another_folder_prints_what_the_checkout_prints(installed):
    venv, env, cwd = installed
    checkout = subprocess.run([CHECKOUT_MICROAGENT, "replay", SAMPLE, "--window", "600"], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    assert checkout.returncode == 0, checkout.stderr
    proc = run(installed, "replay", "quiet-device.jsonl", "--window", "600")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) >= 20
    assert without_ids(proc.stdout) == without_ids(checkout.stdout)
    # The .mpy bundle went to the user's cache, none into the installed package.
    bundles = os.listdir(os.path.join(env["XDG_CACHE_HOME"], "microagent", "mpy"))
    assert len(bundles) == 1, bundles
    compiled = os.path.join(env["XDG_CACHE_HOME"], "microagent", "mpy", bundles[0], "microagent")
    assert os.path.isfile(os.path.join(compiled, "engine.mpy"))
    assert not [f for _, _, files in os.walk(venv) for f in files if f.endswith(".mpy")]
    # A second run uses the same bundle.
    again = run(installed, "replay", "quiet-device.jsonl", "--window", "600")
    assert again.returncode == 0, again.stderr
    assert os.listdir(os.path.join(env["XDG_CACHE_HOME"], "microagent", "mpy")) == bundles


def test_the_installed_schema_accepts_what_replay_prints(installed):
    venv, env, cwd = installed
    proc = run(installed, "replay", "quiet-device.jsonl")
    assert proc.returncode == 0, proc.stderr
    check = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import sys\nfrom host_sim import schema\n"
                            "for line in sys.stdin: schema.check(line)\nprint('valid')"],
                           cwd=cwd, env=env, input=proc.stdout, capture_output=True, text=True)
    assert check.stdout == "valid\n", check.stderr
    broken = json.loads(proc.stdout.splitlines()[0])
    del broken["AgentId"]
    check = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import sys\nfrom host_sim import schema\nprint(schema.errors(sys.stdin.read()))"],
                           cwd=cwd, env=env, input=json.dumps(broken), capture_output=True, text=True)
    assert "'AgentId' is a required property" in check.stdout, check.stderr


def test_crosscheck_from_another_folder_passes(installed):
    proc = run(installed, "crosscheck", "quiet-device.jsonl", "--window", "600")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "crosscheck passed" in proc.stdout


def test_demo_from_another_folder_sends_the_bundled_sample_to_the_hub(installed):
    proc = run(installed, "demo")
    assert proc.returncode == 0, proc.stderr
    assert "hub received message 1 of 4 from demo-sensor" in proc.stdout
    assert "537 raw events became 4 messages" in proc.stdout


@pytest.mark.parametrize("runtime", ["micropython32", "qemu-cortex-m3"])
def test_the_32_bit_targets_say_in_one_line_that_they_need_a_checkout(installed, runtime):
    proc = run(installed, "replay", "quiet-device.jsonl", "--runtime", runtime)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "checkout of microagent" in proc.stderr

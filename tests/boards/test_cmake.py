"""CMakeLists.txt: the .mpy bundle targets and the ctest entries. What firmware/manifest.py freezes
is checked against what a board imports in test_frozen_modules.py."""
import os
import shutil
import subprocess

import pytest

from board_helpers import REPO, file_tree
from firmware_bundle import HOST_ONLY  # noqa: E402 (tools/ is on the path now)
from firmware_bundle import mpy_header


def _cmake():
    found = shutil.which("cmake")
    if not found:
        pytest.fail("cmake is missing: install Debian package cmake")
    return found


def _run(*cmd, cwd=None):
    proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    build = tmp_path_factory.mktemp("cmake-build")
    _run(_cmake(), "-S", REPO, "-B", str(build))
    return build


def test_bundle_target_builds_mpy_for_the_board_arch(build_dir):
    _run(_cmake(), "--build", str(build_dir), "--target", "mpy_bundle_esp32")
    package = build_dir / "bundle" / "esp32" / "microagent"
    source_root = os.path.join(REPO, "firmware", "microagent")
    sources = [f for f in file_tree(source_root, ".py") if "microagent/" + f not in HOST_ONLY]
    assert file_tree(str(package), ".mpy") == sorted(f[:-3] + ".mpy" for f in sources)
    for name in file_tree(str(package), ".mpy"):
        version, _sub, arch = mpy_header((package / name).read_bytes())
        assert version == 6 and arch in (None, "xtensawin")
    assert (build_dir / "bundle" / "esp32" / "microagent_board.json").exists()


def test_default_target_builds_the_unix_bundle(build_dir):
    _run(_cmake(), "--build", str(build_dir))
    assert (build_dir / "bundle" / "unix" / "microagent_board.json").exists()


def test_ctest_runs_every_suite_through_the_venv_pytest(build_dir):
    listing = _run("ctest", "--test-dir", str(build_dir), "-N", "-V")
    tests = os.path.join(REPO, "tests")
    suites = [d for d in sorted(os.listdir(tests)) if os.path.isdir(os.path.join(tests, d))
              and any(f.startswith("test_") for f in os.listdir(os.path.join(tests, d)))]
    assert "boards" in suites
    for suite in suites:
        assert "Test command: %s/.venv/bin/python \"-m\" \"pytest\" \"-q\" \"%s/tests/%s\"" \
            % (REPO, REPO, suite) in listing.replace("/bin/python3", "/bin/python")


def test_board_profiles_check_runs_under_ctest(build_dir):
    _run("ctest", "--test-dir", str(build_dir), "-R", "board_profiles", "--output-on-failure")

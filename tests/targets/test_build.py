"""tools/build_firmware.py (`make firmware`): built once and reused while nothing changed, and one
clear line with a non-zero exit for a missing source or toolchain."""
import os
import subprocess
import sys

from board_helpers import REPO, TOOLS, run_tool

import pytest


def _builder():
    sys.path.insert(0, TOOLS)
    import build_firmware
    return build_firmware


def test_a_current_build_is_reused(firmware_targets):
    before = {t: os.stat(p).st_mtime_ns for t, p in firmware_targets.items()}
    proc = run_tool("build_firmware.py", "all", timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("up to date") == 2, proc.stderr
    assert {t: os.stat(p).st_mtime_ns for t, p in firmware_targets.items()} == before


def test_the_stamp_follows_the_frozen_firmware(firmware_targets, tmp_path, monkeypatch):
    builder = _builder()
    identity = "tar:test"
    stamp = builder.stamp_of("qemu-cortex-m3", identity)
    assert stamp == builder.stamp_of("qemu-cortex-m3", identity)
    module = tmp_path / "firmware" / "microagent"
    module.mkdir(parents=True)
    for name in ("manifest.py", "host_only.txt"):
        (tmp_path / "firmware" / name).write_bytes(open(os.path.join(REPO, "firmware", name), "rb").read())
    (module / "engine.py").write_text("x = 1\n")
    monkeypatch.setattr(builder, "FIRMWARE", str(tmp_path / "firmware"))
    first = builder.stamp_of("qemu-cortex-m3", identity)
    (module / "engine.py").write_text("x = 2\n")
    assert builder.stamp_of("qemu-cortex-m3", identity) != first
    # the board definition is a configuration change (a clean build), the agent's code is not
    assert builder.stamp_of("qemu-cortex-m3", identity, config_only=True) == \
        builder.stamp_of("qemu-cortex-m3", identity, config_only=True)


def test_a_missing_source_is_one_line():
    env = dict(os.environ, MICROPY_SRC="/nonexistent/micropython.tar.gz")
    proc = run_tool("build_firmware.py", "micropython32", env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("build_firmware: MICROPY_SRC=/nonexistent/micropython.tar.gz "
                                   "does not exist (a MicroPython v1.28.0 tarball or source tree)")


def test_no_source_and_no_network_says_what_to_set(monkeypatch, tmp_path):
    builder = _builder()
    monkeypatch.setattr(builder, "BUILD", str(tmp_path))
    monkeypatch.setattr(builder, "UPSTREAM", "file:///nonexistent/micropython")
    with pytest.raises(builder.BuildError) as err:
        builder.prepare_source(None)
    assert err.value.exit_status == 2
    assert "set MICROPY_SRC" in str(err.value) and "\n" not in str(err.value)


def test_a_tarball_that_is_not_micropython_is_refused(tmp_path):
    content = tmp_path / "content"
    content.mkdir()
    (content / "README").write_text("not MicroPython\n")
    bogus = tmp_path / "bogus.tar.gz"
    subprocess.run(["tar", "-czf", str(bogus), "-C", str(content), "."], check=True)
    env = dict(os.environ, MICROPY_SRC=str(bogus))
    proc = run_tool("build_firmware.py", "micropython32", env=env)
    assert proc.returncode == 2
    assert "does not hold a MicroPython source tree" in proc.stderr.splitlines()[-1]


def test_a_missing_cross_compiler_is_named(tmp_path, monkeypatch):
    builder = _builder()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make",):
        os.symlink(subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip(),
                   bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(builder.BuildError) as err:
        builder.check_toolchain("qemu-cortex-m3")
    assert err.value.exit_status == 2
    assert str(err.value) == ("missing toolchain: arm-none-eabi-gcc (Debian packages "
                              "gcc-arm-none-eabi, libnewlib-arm-none-eabi; run `make setup`)")


def test_missing_qemu_is_one_line(firmware_targets, tmp_path):
    """A built image needs no toolchain, but the emulated board needs QEMU."""
    trace = os.path.join(REPO, "tests", "fixtures", "traces", "quiet-device.jsonl")
    env = dict(os.environ, PATH=str(tmp_path))  # no qemu-system-arm, nor anything else
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "microagent"), "replay",
                           trace, "--runtime", "qemu-cortex-m3"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == ("microagent: error: qemu-system-arm is missing: run "
                                            "`make setup` (Debian package qemu-system-arm)")


def test_cmake_firmware_target_runs_the_builder(firmware_targets, tmp_path):
    build = tmp_path / "cmake"
    configure = subprocess.run(["cmake", "-S", REPO, "-B", str(build)], capture_output=True,
                               text=True, timeout=120)
    assert configure.returncode == 0, configure.stderr
    proc = subprocess.run(["cmake", "--build", str(build), "--target", "firmware"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "micropython32: up to date" in out and "qemu-cortex-m3: up to date" in out

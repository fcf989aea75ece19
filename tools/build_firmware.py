#!/usr/bin/env python3
"""Builds the 32-bit MicroPython targets with the agent frozen in (`make firmware`, CMake target
`firmware`, and the tests' session fixture):

    tools/build_firmware.py [micropython32|qemu-cortex-m3|all] [--src PATH] [--jobs N]

  build/micropython32/micropython     the unix port for i386 (MICROPY_FORCE_32BIT=1)
  build/qemu-cortex-m3/firmware.elf   ports/qemu for MPS2-AN385 (Cortex-M3), BOARD_DIR
                                      boards/qemu-cortex-m3 (TLS, asyncio, RAM disk, UART1)

The MicroPython source is MICROPY_SRC (--src): the v1.28.0 tarball or a source tree; by default
../shared/vendor/micropython-1.28.0.tar.gz beside the repository, else a clone of the pinned tag
when the network allows. It is unpacked (or copied) under build/micropython-src/. Each target is
rebuilt only when its stamp changes: a hash of the frozen firmware modules, the manifests, the
board definition, the build flags and the source. Progress goes to stderr, make's output to
build/<target>/build.log. Exit status: 0 built or up to date, 1 the build failed, 2 a missing
source or toolchain (one line naming it).
"""
import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(REPO, "build")
FIRMWARE = os.path.join(REPO, "firmware")
QEMU_BOARD_DIR = os.path.join(REPO, "boards", "qemu-cortex-m3")
DEFAULT_TARBALL = os.path.normpath(os.path.join(REPO, "..", "shared", "vendor",
                                                "micropython-1.28.0.tar.gz"))
PINNED_TAG = "v1.28.0"
UPSTREAM = "https://github.com/micropython/micropython"
SUBMODULES = ("lib/mbedtls", "lib/micropython-lib")
TARGETS = ("micropython32", "qemu-cortex-m3")
OUTPUTS = {"micropython32": "micropython", "qemu-cortex-m3": "firmware.elf"}
# Each target's port in the MicroPython tree, its board folder (MicroPython's BOARD_DIR), and the
# port's own manifest that firmware/manifest.py includes (MICROAGENT_PORT_MANIFEST).
PORTS = {"micropython32": "ports/unix", "qemu-cortex-m3": "ports/qemu"}
BOARD_DIRS = {"micropython32": None, "qemu-cortex-m3": QEMU_BOARD_DIR}
PORT_MANIFESTS = {"micropython32": "$(PORT_DIR)/variants/standard/manifest.py",
                  "qemu-cortex-m3": os.path.join(QEMU_BOARD_DIR, "manifest.py")}
# With the NIST curve arithmetic ESP-IDF's mbedTLS enables by default: the TLS handshake's key
# exchange is one mbedTLS call the board's asyncio loop waits for, about 3x shorter with it.
UNIX_FLAGS = ("MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0",
              "CFLAGS_EXTRA=-DMBEDTLS_ECP_NIST_OPTIM")
# Double-precision floats (in software: the Cortex-M3 has no FPU): a trace's epoch seconds with
# milliseconds need 41 bits of mantissa; single precision keeps them to 128 s (docs/targets.md).
QEMU_FLAGS = ("MICROPY_PY_BTREE=0", "MICROPY_FLOAT_IMPL=double")
# The heap of the emulated board's image: MicroPython's default for the qemu port. A smaller
# heap for one run is a ballast the runtime allocates (docs/targets.md).
QEMU_HEAP_BYTES = 143360
QEMU = "qemu-system-arm"


def qemu_command(image, console="stdio", extra=()):
    """The qemu-system-arm command line that runs the Cortex-M3 image built here: CONSOLE (UART0)
    on stdio or a tty device, semihosting for the host's clock and files, EXTRA for UART1."""
    # -display none, not -nographic: that multiplexes stdio and takes Ctrl-A (the raw REPL). A
    # tty console is opened as a serial device (raw); QEMU's stdio would turn \n into \r\n.
    return [QEMU, "-machine", "mps2-an385", "-display", "none", "-monitor", "null", "-semihosting",
            "-kernel", image, "-serial", console] + list(extra)


class BuildError(Exception):
    """One line naming what failed; EXIT is the exit status."""

    def __init__(self, message, exit_status=1):
        super().__init__(message)
        self.exit_status = exit_status


def output_path(target):
    return os.path.join(BUILD, target, OUTPUTS[target])


def progress(text):
    sys.stderr.write("firmware: %s\n" % text)
    sys.stderr.flush()


# ---- the MicroPython source ---------------------------------------------------------------------

def source_setting(src=None):
    """The MicroPython source to use: --src, $MICROPY_SRC, the shared tarball, or None (clone)."""
    src = src or os.environ.get("MICROPY_SRC")
    if src:
        src = os.path.abspath(os.path.expanduser(src))
        if not os.path.exists(src):
            raise BuildError("MICROPY_SRC=%s does not exist (a MicroPython v1.28.0 tarball or "
                             "source tree)" % src, 2)
        return src
    return DEFAULT_TARBALL if os.path.exists(DEFAULT_TARBALL) else None


def _digest_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _top_dir(tree):
    """The MicroPython root inside TREE (the tree itself, or its single subdirectory)."""
    if os.path.isdir(os.path.join(tree, "py")):
        return tree
    entries = [e for e in os.listdir(tree) if os.path.isdir(os.path.join(tree, e))]
    if len(entries) == 1 and os.path.isdir(os.path.join(tree, entries[0], "py")):
        return os.path.join(tree, entries[0])
    raise BuildError("%s does not hold a MicroPython source tree (no py/ folder)" % tree, 2)


def _check_tree(top, origin):
    for part in ("py", "ports/unix", "ports/qemu", "mpy-cross", "lib/mbedtls/library",
                 "lib/micropython-lib/python-stdlib"):
        if not os.path.isdir(os.path.join(top, part)):
            raise BuildError("%s lacks %s: it must be MicroPython %s with the submodules %s"
                             % (origin, part, PINNED_TAG, ", ".join(SUBMODULES)), 2)


def _clone(dest):
    progress("no MICROPY_SRC: cloning %s at %s" % (UPSTREAM, PINNED_TAG))
    try:
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch", PINNED_TAG,
                        UPSTREAM, dest], check=True, capture_output=True, timeout=600)
        subprocess.run(["git", "-C", dest, "submodule", "update", "--init", "--depth", "1"]
                       + list(SUBMODULES), check=True, capture_output=True, timeout=900)
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(dest, ignore_errors=True)
        raise BuildError("no MicroPython source: set MICROPY_SRC to the MicroPython v1.28.0 "
                         "tarball or source tree (e.g. MICROPY_SRC=../shared/vendor/"
                         "micropython-1.28.0.tar.gz); cloning %s failed (no network?)" % UPSTREAM, 2)


def prepare_source(src):
    """(MicroPython root, identity) of a private, writable copy under build/micropython-src."""
    root = os.path.join(BUILD, "micropython-src")
    os.makedirs(root, exist_ok=True)
    if src is None:
        dest = os.path.join(root, "clone-" + PINNED_TAG)
        if not os.path.isdir(os.path.join(dest, "py")):
            _clone(dest)
        identity = "git:" + PINNED_TAG
    elif os.path.isfile(src):
        identity = "tar:" + _digest_file(src)
        dest = os.path.join(root, identity[4:20])
        if not os.path.exists(os.path.join(dest, ".unpacked")):
            progress("unpacking %s" % src)
            shutil.rmtree(dest, ignore_errors=True)
            staging = dest + ".tmp"
            shutil.rmtree(staging, ignore_errors=True)
            try:
                with tarfile.open(src) as tar:
                    tar.extractall(staging, filter="data")
            except (tarfile.TarError, OSError) as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise BuildError("MICROPY_SRC=%s: not a readable tarball (%s)" % (src, exc), 2)
            os.rename(staging, dest)
            open(os.path.join(dest, ".unpacked"), "w").close()
    else:
        identity = "dir:" + src
        dest = os.path.join(root, "tree-" + hashlib.sha256(src.encode()).hexdigest()[:16])
        progress("copying %s" % src)
        # Copied each time (cheap next to a build) so a changed tree is seen; make then
        # rebuilds only what changed.
        subprocess.run(["cp", "-a", "-u", "-T", src, dest], check=True)
    top = _top_dir(dest)
    _check_tree(top, src or UPSTREAM)
    return top, identity


# ---- toolchains ---------------------------------------------------------------------------------

def check_toolchain(target):
    """BuildError (exit 2) naming the missing tool or Debian package."""
    if shutil.which("make") is None:
        raise BuildError("missing toolchain: make (Debian package make; run `make setup`)", 2)
    if target == "micropython32":
        probe = subprocess.run(["gcc", "-m32", "-x", "c", "-", "-o", os.devnull],
                               input=b"#include <stdio.h>\nint main(void){return 0;}\n",
                               capture_output=True)
        if probe.returncode != 0:
            raise BuildError("missing toolchain: gcc cannot build 32-bit (i386) programs "
                             "(Debian package gcc-multilib; run `make setup`)", 2)
    else:
        if shutil.which("arm-none-eabi-gcc") is None:
            raise BuildError("missing toolchain: arm-none-eabi-gcc (Debian packages "
                             "gcc-arm-none-eabi, libnewlib-arm-none-eabi; run `make setup`)", 2)


# ---- stamps -------------------------------------------------------------------------------------

def _tree_files(folder):
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if not name.endswith((".pyc", ".mpy")):
                yield os.path.join(dirpath, name)


def stamp_of(target, identity, config_only=False):
    """A hash of everything that goes into TARGET's image; CONFIG_ONLY: of what make does not
    track by itself (the board definition, flags, source), which calls for a clean build."""
    digest = hashlib.sha256()
    inputs = []
    if target == "qemu-cortex-m3":
        # Its Python modules are frozen like the agent's, which make follows by itself.
        inputs += [p for p in _tree_files(QEMU_BOARD_DIR) if not config_only or not p.endswith(".py")]
    if not config_only:
        inputs.append(os.path.abspath(__file__))
        inputs += list(_tree_files(os.path.join(FIRMWARE, "microagent")))
        inputs += [os.path.join(FIRMWARE, "manifest.py"), os.path.join(FIRMWARE, "host_only.txt")]
    for path in inputs:
        digest.update(os.path.relpath(path, REPO).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read())
    flags = UNIX_FLAGS if target == "micropython32" else QEMU_FLAGS
    digest.update(json.dumps([target, identity, flags, QEMU_HEAP_BYTES]).encode())
    return digest.hexdigest()


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def up_to_date(target, identity):
    stamp = os.path.join(BUILD, target, ".stamp")
    return os.path.exists(output_path(target)) and _read(stamp) == stamp_of(target, identity)


# ---- building -----------------------------------------------------------------------------------

def _make(args, log, cwd, env, what):
    started = time.monotonic()
    progress("%s: make %s (log: %s)" % (what, " ".join(args[:2]), os.path.relpath(log.name, REPO)))
    log.write("\n$ make %s\n" % " ".join(args))
    log.flush()
    proc = subprocess.Popen(["make"] + list(args), cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    last = started
    while proc.poll() is None:
        time.sleep(0.5)
        if time.monotonic() - last >= 15:
            last = time.monotonic()
            progress("%s: still building (%ds)" % (what, last - started))
    if proc.returncode != 0:
        log.flush()
        with open(log.name, errors="replace") as f:
            lines = [line.rstrip() for line in f if line.strip()]
        errors = [line for line in lines if "error:" in line.lower() or "*** " in line]
        raise BuildError("%s: make -C %s failed: %s (full log: %s)"
                         % (what, args[1], (errors or lines or ["no output"])[0][:300],
                            os.path.relpath(log.name, REPO)))
    progress("%s: done in %ds" % (what, time.monotonic() - started))


def build_target(target, top, identity, jobs):
    out_dir = os.path.join(BUILD, target)
    os.makedirs(out_dir, exist_ok=True)
    objects = os.path.join(out_dir, "obj")
    config_stamp = os.path.join(out_dir, ".config-stamp")
    config = stamp_of(target, identity, config_only=True)
    if _read(config_stamp) != config:
        # MicroPython's make does not see a changed configuration header (its qstr list would go
        # stale): a new board definition or source starts from a clean object tree.
        shutil.rmtree(objects, ignore_errors=True)
    manifest = os.path.join(FIRMWARE, "manifest.py")
    env = dict(os.environ)
    for name in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # cmake --build's make must not leak in
        env.pop(name, None)
    # The source lies inside our checkout: git must not describe our commit as MicroPython's.
    env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(top)
    with open(os.path.join(out_dir, "build.log"), "w") as log:
        _make(["-C", "mpy-cross", "-j%d" % jobs], log, top, env, "mpy-cross")
        env["MICROAGENT_PORT_MANIFEST"] = PORT_MANIFESTS[target]
        if target == "micropython32":
            _make(["-C", PORTS[target], "-j%d" % jobs, "BUILD=" + objects,
                   "FROZEN_MANIFEST=" + manifest]
                  + list(UNIX_FLAGS), log, top, env, target)
            built = os.path.join(objects, "micropython")
        else:
            _make(["-C", PORTS[target], "-j%d" % jobs, "BOARD_DIR=" + BOARD_DIRS[target],
                   "BUILD=" + objects, "FROZEN_MANIFEST=" + manifest,
                   "USER_C_MODULES=" + os.path.join(QEMU_BOARD_DIR, "cmodules"),
                   "MICROPY_HEAP_SIZE=%d" % QEMU_HEAP_BYTES] + list(QEMU_FLAGS),
                  log, top, env, target)
            built = os.path.join(objects, "firmware.elf")
    shutil.copy2(built, output_path(target) + ".tmp")
    os.replace(output_path(target) + ".tmp", output_path(target))
    with open(config_stamp, "w") as f:
        f.write(config + "\n")
    with open(os.path.join(out_dir, ".stamp"), "w") as f:
        f.write(stamp_of(target, identity) + "\n")


def ensure(targets=TARGETS, src=None, jobs=None):
    """Builds TARGETS unless up to date; returns {target: output path}. Raises BuildError.
    Holds build/.firmware.lock, so concurrent callers build once."""
    jobs = jobs or max(1, os.cpu_count() or 1)
    os.makedirs(BUILD, exist_ok=True)
    with open(os.path.join(BUILD, ".firmware.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        top, identity = prepare_source(source_setting(src))
        for target in targets:
            if up_to_date(target, identity):
                progress("%s: up to date (%s)" % (target, os.path.relpath(output_path(target), REPO)))
                continue
            check_toolchain(target)  # only a build needs one
            build_target(target, top, identity, jobs)
            progress("%s: built %s" % (target, os.path.relpath(output_path(target), REPO)))
    return {t: output_path(t) for t in targets}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="build_firmware.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", default="all", choices=TARGETS + ("all",))
    parser.add_argument("--src", help="MicroPython source: tarball or tree (default $MICROPY_SRC)")
    parser.add_argument("--jobs", type=int, help="parallel make jobs (default: CPU count)")
    args = parser.parse_args(argv)
    targets = TARGETS if args.target == "all" else (args.target,)
    try:
        ensure(targets, args.src, args.jobs)
    except BuildError as exc:
        print("build_firmware: %s" % exc, file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("build_firmware: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

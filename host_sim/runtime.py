"""Running firmware code inside the real MicroPython unix port, from cross-compiled .mpy files."""
import hashlib
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(REPO, "firmware")
PACKAGE = os.path.join(FIRMWARE, "microagent")
BUILD = os.path.join(REPO, "build", "mpy")


def _tool(name):
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    found = candidate if os.path.exists(candidate) else shutil.which(name)
    if not found:
        raise RuntimeError("`%s` is not installed: run `make setup`" % name)
    return found


def micropython_binary():
    return _tool("micropython")


def _sources():
    found = []
    for folder, _, files in os.walk(PACKAGE):
        found.extend(os.path.join(folder, f) for f in files if f.endswith(".py"))
    return sorted(found)


def compiled_firmware():
    """A directory holding microagent/*.mpy compiled from the current sources (cached by hash).

    .mpy files load without compiling source on the heap, as frozen or deployed code does on a
    board, so heap figures measured with them are the ones a board would see.
    """
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(path.encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    target = os.path.join(BUILD, digest.hexdigest()[:16])
    if os.path.isdir(target):
        return target
    staging = target + ".tmp%d" % os.getpid()
    mpy_cross = _tool("mpy-cross")
    for path in _sources():
        relative = os.path.relpath(path, FIRMWARE)
        out = os.path.join(staging, relative[:-3] + ".mpy")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run([mpy_cross, "-o", out, "-s", relative, path], check=True,
                       cwd=FIRMWARE, capture_output=True)
    try:
        os.rename(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process built it first
    return target


def child_environment():
    """This process's environment less the device key: a child never inherits it."""
    env = dict(os.environ)
    env.pop("MICROAGENT_CONNECTION_STRING", None)
    return env


def micropython_command(module, args, heap="64K"):
    """(argv, env) to run `micropython -m MODULE ARGS` with the compiled firmware on its path."""
    env = child_environment()
    env["MICROPYPATH"] = compiled_firmware() + ":.frozen"
    return [micropython_binary(), "-X", "heapsize=%s" % heap, "-m", module] + list(args), env

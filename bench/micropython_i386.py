"""A 32-bit (i386) MicroPython unix port built from the vendored v1.28.0 source, for figures
that must come from a 32-bit VM (31-bit small ints, 4-byte pointers). Built once into
build/micropython-i386/ (about a minute on 2 cores; needs gcc-multilib)."""
import os
import shutil
import subprocess
import tarfile

from bench.report import progress

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARBALL = os.path.join(os.path.dirname(REPO), "shared", "vendor", "micropython-1.28.0.tar.gz")
BUILD = os.path.join(REPO, "build", "micropython-i386")
BINARY = os.path.join(BUILD, "micropython-1.28.0", "ports", "unix", "build-standard",
                      "micropython")


def binary():
    """The i386 micropython binary, built if missing; RuntimeError (one line) if it cannot be."""
    if os.path.exists(BINARY):
        return BINARY
    if not os.path.exists(TARBALL):
        raise RuntimeError("no MicroPython source at %s" % TARBALL)
    progress("building a 32-bit MicroPython unix port from %s (once)" % TARBALL)
    shutil.rmtree(BUILD, ignore_errors=True)
    os.makedirs(BUILD)
    with tarfile.open(TARBALL) as tar:
        tar.extractall(BUILD, filter="tar")
    source = os.path.join(BUILD, "micropython-1.28.0")
    jobs = "-j%d" % (os.cpu_count() or 1)
    for command in (["make", jobs, "-C", os.path.join(source, "mpy-cross")],
                    ["make", jobs, "-C", os.path.join(source, "ports", "unix"),
                     "MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0"]):
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("building the i386 MicroPython failed: %s"
                               % (proc.stderr.strip().splitlines() or ["?"])[-1])
    return BINARY

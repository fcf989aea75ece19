# MicroPython manifest: freezes the agent into a firmware image, so its code runs from flash
# instead of the heap. Build a port with it (docs/flashing.md, "Freeze the agent into firmware"):
#   make -C micropython/ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=$PWD/firmware/manifest.py
# FROZEN_MANIFEST replaces the board's manifest, so the port's own is included first: its frozen
# modules (asyncio, network helpers) stay in the image. The unix port keeps it under variants/:
# set MICROAGENT_PORT_MANIFEST='$(PORT_DIR)/variants/standard/manifest.py' there (`make firmware` does,
# and uses boards/qemu-cortex-m3/manifest.py for the emulated board).
# Only the modules a board runs are frozen: host-only ones (host_only.txt) stay out.
import os

include(os.environ.get("MICROAGENT_PORT_MANIFEST", "$(PORT_DIR)/boards/manifest.py"))

with open("host_only.txt") as _listing:
    _host_only = {line.strip() for line in _listing if line.strip() and not line.startswith("#")}
_board_files = []
for _folder, _dirs, _names in os.walk("microagent"):
    _dirs[:] = sorted(d for d in _dirs if d != "__pycache__")
    for _name in sorted(_names):
        _path = os.path.join(_folder, _name).replace(os.sep, "/")
        if _name.endswith(".py") and _path not in _host_only:
            _board_files.append(_path[len("microagent/"):])
package("microagent", files=_board_files)
# main.py and boot.py stay on the filesystem: a board runs them from there, and flash.py writes
# them with the board profile (microagent_board.json) and the device credentials.

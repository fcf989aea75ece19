# MicroPython manifest: freezes the agent into a firmware image, so its code runs from flash
# instead of the heap. Build a port with it (docs/flashing.md, "Freeze the agent into firmware"):
#   make -C micropython/ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=$PWD/firmware/manifest.py
# FROZEN_MANIFEST replaces the board's manifest, so the port's own is included first: its frozen
# modules (asyncio, network helpers) stay in the image. The unix port keeps it under variants/:
# set MICROAGENT_PORT_MANIFEST='$(PORT_DIR)/variants/manifest.py' there.
import os

include(os.environ.get("MICROAGENT_PORT_MANIFEST", "$(PORT_DIR)/boards/manifest.py"))
package("microagent")
# main.py and boot.py stay on the filesystem: a board runs them from there, and flash.py writes
# them with the board profile (microagent_board.json) and the device credentials.

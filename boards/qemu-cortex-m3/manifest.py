# The port-level part of the emulated board's frozen manifest (firmware/manifest.py includes it
# through MICROAGENT_PORT_MANIFEST): asyncio, the ssl wrapper over tls, the board's _boot and its
# socket module (TCP over UART1).
include("$(MPY_DIR)/extmod/asyncio")
require("ssl")
module("_boot.py")
module("socket.py")
module("hostfs.py")

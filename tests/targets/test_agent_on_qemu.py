"""The agent on the emulated Cortex-M3, end to end: tools/flash.py --frozen deploys the profile,
credentials and CA onto the board's RAM disk, the frozen agent starts, and its messages reach the
local IoT Hub emulator over UART1 (bridged to the host's TCP), MQTT 3.1.1 with TLS and SAS as on
Wi-Fi."""
import json
import os
import subprocess
import sys

from agent_helpers import Console, events, security_messages
from board_helpers import TOOLS, run_tool
from hub_emulator.process import HubProcess

DEVICE = "qemu-1"
WINDOW_MS = 3000


def _flash(port, *args):
    return run_tool("flash.py", "--board", "qemu-cortex-m3", "--port", port, "--json", *args,
                    timeout=300)


def test_frozen_agent_on_qemu_sends_to_the_hub_over_uart1(firmware_targets, tmp_path):
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device(DEVICE)
    board = subprocess.Popen([sys.executable, os.path.join(TOOLS, "virtual_board.py"), "--board",
                              "qemu-cortex-m3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        ready = json.loads(board.stdout.readline())
        with hub:
            # The test's window length goes beside the credentials: written first as a plain
            # file, then flash.py writes the credentials themselves (the key never on argv: env).
            settings = tmp_path / "device.json"
            settings.write_text(json.dumps({"connection_string": connection_string,
                                            "port": hub.port, "window_ms": WINDOW_MS}))
            proc = _flash(ready["port"], "--files", "%s:microagent_device.json" % settings)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            proc = _flash(ready["port"], "--frozen", "--ca", hub.ca_der, "--log-seconds", "60")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            lines = [json.loads(line) for line in proc.stdout.splitlines()]
            written = [e["path"] for e in lines if e["event"] == "verified"]
            assert sorted(written) == ["/flash/boot.py", "/flash/main.py",
                                       "/flash/microagent_board.json", "/flash/microagent_ca.der"]
            started = [e for e in lines if e["event"] == "started"]
            assert started and "board=qemu-cortex-m3" in started[0]["line"]
            console = Console(ready["port"])
            try:
                console.wait_for(lambda c: any("hub: connected" in line for line in c.lines)
                                 and len(hub.messages(DEVICE)) >= 2, 120, "messages at the hub")
            finally:
                console.close()
            messages = security_messages(hub, DEVICE)
    finally:
        board.terminate()
        out, _ = board.communicate(timeout=15)
    system = events(messages, "SystemInformation")
    assert system, [e["Name"] for m in messages for e in m["Events"]]
    assert any("uart link: connected to 127.0.0.1:%d" % hub.port in line for line in out.splitlines())

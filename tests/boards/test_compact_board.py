"""The agent on the virtual board switching to the compact encoding from the module twin: the
change applies at the next window, the hub then stores application/cbor messages, and they
decode to JSON messages that pass the message schema."""
import time

from agent_helpers import provision
from board_helpers import run_tool
from hub_emulator.process import HubProcess
from host_sim import schema
from microagent.decode import decode_body, message_text

DEVICE = "board-1"


def _until(predicate, timeout, what):
    # Polls the hub's store (the agent's console may have said its part before we listen).
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("%s not seen within %ss" % (what, timeout))


def test_the_twin_switches_the_board_to_compact_messages(virtual_board, tmp_path):
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device(DEVICE)
    with hub:
        provision(virtual_board.flash, hub, connection_string, 1500)
        proc = run_tool("flash.py", "--board", "unix", "--port", virtual_board.port, "--json",
                        "--log-seconds", "30", timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        _until(lambda: hub.messages(DEVICE), 30, "a first message at the hub")
        hub.set_desired(DEVICE, {"IothubModule_MessageEncoding": "Compact"})
        _until(lambda: any(m["properties"].get("$.ct") == "application/cbor"
                           for m in hub.messages(DEVICE)), 30, "a compact message at the hub")
        twin = hub.twin(DEVICE)
        stored = hub.messages(DEVICE)
    assert twin["reported"]["config"]["IothubModule_MessageEncoding"] == "Compact"
    kinds = [m["properties"]["$.ct"] for m in stored]
    first = kinds.index("application/cbor")
    assert "application/json" in kinds[:first]  # SystemInformation/SBoM at start, in JSON
    assert set(kinds[first:]) == {"application/cbor"}
    for m in stored:
        message = decode_body(m["payload"], m["properties"])
        schema.check(message_text(message))

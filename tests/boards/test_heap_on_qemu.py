"""The agent's heap budget on the emulated Cortex-M3, where mbedTLS allocates from the MicroPython
heap (the bare-metal configuration of STM32 and RP2 boards): capped at the interpreter's own use
plus the qemu-cortex-m3 profile's heap_budget_bytes (an application holds the rest as ballast),
the agent connects to the hub over TLS, fills its network cache every window and delivers
full windows without a MemoryError, and its live peak stays inside the budget."""
import board_m3
import board_profiles
from hub_emulator.process import HubProcess


def test_the_agent_runs_in_its_heap_budget_on_the_cortex_m3(firmware_targets, tmp_path):
    profile = board_profiles.load("qemu-cortex-m3")
    budget = profile["heap_budget_bytes"]
    size = profile["config"]["NetworkActivity_CacheSize"]
    interpreter = board_m3.interpreter_heap()
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device("m3-budget")
    with hub:
        lines = board_m3.run_agent(str(tmp_path), hub, connection_string, profile,
                                   cap=interpreter + budget)
    said = "\n".join(lines[-40:])
    assert not [line for line in lines if "MemoryError" in line or "error:" in line], said
    full = board_m3.full_windows(lines, size)
    assert len(full) >= 3 and full[-1]["delivered"] > 0, said
    assert any("hub: connected" in line for line in lines), said
    # Every heap figure the agent reports includes the ballast; without it the live peak must
    # leave the budget room for what is allocated and freed between two collections.
    peak = max(w["peak"] for w in full) - board_m3.ballast(lines)
    assert peak - interpreter < budget, (peak - interpreter, budget)

"""The agent's heap on a 32-bit MicroPython with the agent frozen (build/micropython32, the i386
unix port with mbedTLS allocating from the MicroPython heap, as on bare-metal boards): each board
profile's heap_budget_bytes holds with full caches while connected to the hub over TLS, the
ESP32 profile's agent data fits in 24 KB, and the heap stays flat over 10,000 windows, without
a hub and connected to it. The emulated Cortex-M3's budget: test_heap_on_qemu.py."""
import json
import os
import subprocess
import sys
import time

import pytest

import board32
import board_profiles
from agent_helpers import window_reports
from board_helpers import TOOLS, run_tool
from hub_emulator.process import HubProcess

AGENT_DATA_LIMIT = 24 * 1024
FLAT_WITHIN = 1024
# New peers a window in the long runs: enough that every window's connections fill more than one
# 4 KB message (a message that fills up is where the encoder once leaked).
PEERS = 24
# On these boards mbedTLS allocates from the MicroPython heap, so their budget includes a TLS
# session: 27,472 bytes measured on the i386 build with mbedTLS's bare-metal allocation (the
# Cortex-M3 image's configuration). micropython32 keeps it in libc's heap, so the run there is
# capped that much lower. On an ESP32 it lives in ESP-IDF's heap.
TLS_IN_HEAP = ("stm32", "rp2-pico-w", "qemu-cortex-m3")
TLS_SESSION_BYTES = 27472
BOARDS = [n for n in board_profiles.names()
          if board_profiles.load(n)["runs_agent"] and n != "unix"]


@pytest.fixture(scope="module")
def micropython32():
    binary = board32.micropython32()
    if binary is None:
        proc = subprocess.run(["make", "-C", board32.REPO, "firmware"], capture_output=True,
                              text=True)
        binary = board32.micropython32()
        assert binary is not None, ("build/micropython32/micropython is missing and `make "
                                    "firmware` did not build it:\n" + (proc.stdout + proc.stderr)[-2000:])
    return binary


def _full_and_delivered(profile):
    size = profile["config"]["NetworkActivity_CacheSize"]

    def done(lines):
        found = window_reports(lines)
        return sum(1 for w in found if w["connections"] == size) >= 2 and found[-1]["delivered"]
    return done


@pytest.mark.parametrize("name", BOARDS)
def test_the_agent_runs_in_its_profiles_heap_budget(micropython32, tmp_path, name):
    """The board's heap is capped at the interpreter's own use plus heap_budget_bytes (less the
    TLS session where the budget includes one that micropython32 keeps outside its heap): the
    agent must start, connect over TLS, fill its caches and deliver full windows in it without a
    MemoryError (which would restart it)."""
    profile = board_profiles.load(name)
    budget = profile["heap_budget_bytes"] - (TLS_SESSION_BYTES if name in TLS_IN_HEAP else 0)
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device(name)
    with hub:
        flash = board32.board_dir(str(tmp_path), "board", profile, board32.fill_app(profile), hub,
                                  connection_string=connection_string)
        interpreter = board32.probe(micropython32, flash, profile["heap_bytes"],
                                    board32.INTERPRETER)
        lines = board32.run_board(micropython32, flash, interpreter + budget,
                                  _full_and_delivered(profile), 90)
    windows = window_reports(lines)
    failures = [line for line in lines if "error:" in line or "MemoryError" in line]
    assert not failures, "\n".join(lines[-30:])
    assert _full_and_delivered(profile)(lines), "\n".join(lines[-30:])
    # The live peak (after collection) leaves the budget room for what is allocated and freed
    # between two collections and for fragmentation.
    assert max(w["peak"] for w in windows) - interpreter < budget


def test_esp32_agent_data_fits_in_24_kb_idle_and_connected(micropython32, tmp_path):
    """Agent data: the heap the running agent holds beyond the interpreter, its frozen modules'
    objects and the TLS session (in ESP-IDF's heap on an ESP32): caches, window state, encoder
    buffer, outbox, MQTT client, configuration. No application runs (its heap is its own); the
    caches are allocated whole at start, so full ones take no more."""
    profile = board_profiles.load("esp32")
    heap = profile["heap_bytes"]
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device("esp32")
    with hub:
        flash = board32.board_dir(str(tmp_path), "board", profile, None, hub,
                                  connection_string=connection_string)
        code = board32.probe(micropython32, flash, heap, board32.CODE)
        tls = board32.probe(micropython32, flash, heap, board32.TLS)
        lines = board32.run_board(micropython32, flash, heap,
                                  lambda found: len([w for w in window_reports(found)
                                                     if w["delivered"]]) >= 2, 90)
    idle = board32.started_heap(lines) - code
    connected = max(w["heap"] for w in window_reports(lines)) - code - tls
    assert 0 < idle <= AGENT_DATA_LIMIT, "idle agent data %d bytes" % idle
    assert 0 < connected <= AGENT_DATA_LIMIT, "connected agent data %d bytes" % connected


@pytest.mark.parametrize("connected", [False, True], ids=["no-hub", "connected"])
def test_the_heap_is_flat_over_10000_windows(micropython32, tmp_path, connected):
    """Without a hub, and connected to it over TLS with the delivery task publishing throughout:
    after 10,000 windows the heap after collection is within 1 KB of where it was after the
    first, and every message is accounted for."""
    profile = board_profiles.load("esp32")
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device("esp32")
    with hub:
        flash = board32.board_dir(str(tmp_path), "board", profile, None, hub,
                                  connection_string=connection_string, window_ms=1)
        figures = board32.long_run(micropython32, flash, profile["heap_bytes"], 10000, PEERS,
                                   connected=connected)
        received = len(hub.messages("esp32"))
    assert figures["windows"] == 10000
    # Every window made messages, its connections more than one; the outbox counted every one
    # it dropped.
    assert figures["messages"] >= 4 * 10000
    assert figures["messages"] == (figures["dropped"] + figures["queued"] + figures["delivered"]
                                   + figures["expired"] + figures["too_large"]
                                   + figures["unconfirmed"]), figures
    if connected:
        assert figures["connects"] == 1, figures
        # The agent published throughout: the hub stored every message the agent saw
        # acknowledged, and beyond those only messages it sent without seeing their PUBACK (with
        # windows closing back to back, most are dropped from the outbox to make room first).
        assert received > 0, figures
        assert figures["delivered"] <= received <= (figures["delivered"] + figures["unconfirmed"]
                                                    + figures["queued"]), (received, figures)
    else:
        assert figures["delivered"] == figures["unconfirmed"] == received == 0, figures
    assert abs(figures["last"] - figures["first"]) <= FLAT_WITHIN, figures


def test_micropython32_board_with_64_kb_runs_the_frozen_agent_over_tls(micropython32, tmp_path):
    """tools/virtual_board.py --board micropython32 (a 64 KB heap), tools/flash.py --frozen: the
    agent starts, connects to the hub over TLS, and its SystemInformation and SBoM arrive."""
    profile = board_profiles.load("micropython32")
    assert profile["heap_bytes"] <= 64 * 1024
    flash, port_file = tmp_path / "flash", tmp_path / "port"
    board = subprocess.Popen([sys.executable, os.path.join(TOOLS, "virtual_board.py"), "--board",
                              "micropython32", "--flash", str(flash), "--port-file", str(port_file)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device("m32")
    try:
        end = time.monotonic() + 120  # make firmware may build the image first
        while not port_file.exists():
            assert board.poll() is None and time.monotonic() < end, board.stderr.read()
            time.sleep(0.1)
        with hub:
            proc = run_tool("flash.py", "--board", "micropython32", "--frozen", "--port",
                            port_file.read_text().strip(), "--json", "--connection-string",
                            connection_string, "--ca", hub.ca, "--hub-port", hub.port,
                            "--log-seconds", "1", timeout=300)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert any('"started"' in line and "board=micropython32" in line
                       for line in proc.stdout.splitlines()), proc.stdout
            end = time.monotonic() + 60
            names = set()
            while time.monotonic() < end and names != {"SystemInformation", "SBoM"}:
                names = {e["Name"] for m in hub.messages("m32")
                         for e in json.loads(m["payload"])["Events"]}
                time.sleep(0.2)
    finally:
        board.terminate()
        board.wait(10)
    assert names == {"SystemInformation", "SBoM"}, names
    assert not [line for line in proc.stdout.splitlines() if "MemoryError" in line]

"""The board agent's windows on micropython32 (31-bit small ints, the agent frozen), its tick clock
driven by hand from 2 s before ticks_ms wraps: windows of 60 s on the grid of docs/spec.md
section 2, the periodic collectors at start and once per interval, and a stall over several
windows closing the open one once. Expected values worked out by hand from the spec's rules."""
import json
import os
import subprocess

import board32
import board_profiles
from hub_emulator.process import HubProcess

SCRIPT = """
import asyncio, json, time
from microagent.settings import boot
settings, outbox = boot(print)
from microagent import agent
from microagent.collectors import netsock
clock = [time.ticks_add(0, -2000)]  # 2 s before the ticks wrap
agent.ticks_ms = lambda: clock[0]
lines = []
agent.log = lines.append
tracker = netsock.install(settings.board['config']['NetworkActivity_CacheSize'])
board = agent.Agent(settings, outbox, tracker)
t0 = clock[0]
result = {}


def snapshots():
    return len([line for line in lines if line.startswith('SystemInformation:')])


async def at(ms, name):
    clock[0] = time.ticks_add(t0, ms)
    await board.step()
    result[name] = [board.windows, snapshots(), board._schedule.elapsed[0],
                    time.ticks_diff(tracker.window_start, t0)]


async def main():
    await at(0, 'start')
    await at(59999, 'before_end')
    await at(60000, 'end')
    await at(119999, 'before_second_end')
    await at(240500, 'after_stall')
    result['skipped'] = [line for line in lines if 'skipped' in line]
    result['wrapped'] = time.ticks_add(t0, 240500) < t0
    print('result ' + json.dumps(result))

asyncio.run(main())
"""


def test_board_windows_keep_the_grid_across_the_ticks_wrap_and_a_stall(firmware_targets, tmp_path):
    binary = firmware_targets["micropython32"]
    profile = board_profiles.load("esp32")
    assert "SystemInformation" in profile["collectors"]
    hub = HubProcess(str(tmp_path / "hub"), port=0, plain_port=None)
    connection_string = hub.add_device("esp32")
    with hub:  # for its CA and port: the agent never connects here
        flash = board32.board_dir(str(tmp_path), "board", profile, None, hub,
                                  connection_string=connection_string, window_ms=60000)
    with open(os.path.join(flash, "schedule_run.py"), "w") as f:
        f.write(SCRIPT)
    proc = subprocess.run([binary, "-X", "heapsize=%d" % profile["heap_bytes"], "schedule_run.py"],
                          cwd=flash, env=dict(os.environ, MICROPYPATH=".frozen"),
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("result ")]
    assert proc.returncode == 0 and lines, (proc.stdout + proc.stderr)[-2000:]
    result = json.loads(lines[-1][len("result "):])
    assert result["wrapped"]
    # [windows closed, SystemInformation snapshots, ms into the open window, its start - t0]
    assert result["start"] == [0, 1, 0, 0]
    assert result["before_end"] == [0, 1, 59999, 0]
    assert result["end"] == [1, 2, 0, 60000]
    assert result["before_second_end"] == [1, 2, 59999, 60000]
    # Asleep from 119.999 s to 240.5 s: [60, 120) closes; [120, 180) and [180, 240) are skipped;
    # the open window is [240, 300); one snapshot for the periodic boundaries at 120, 180, 240.
    assert result["after_stall"] == [2, 3, 500, 240000]
    assert len(result["skipped"]) == 1 and result["skipped"][0].startswith("2 windows skipped")

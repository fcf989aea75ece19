"""The host agent applies twin configuration at window boundaries."""
import json
import os
import subprocess
import sys
import time

import pytest

from host_sim.agent import WINDOWED, HostAgent, Options
from microagent.config import Config

T0_MS = 1767225600000  # wall clock, epoch ms
M0 = 5000000           # monotonic clock, ms
MINUTE = 60000


def _agent(collectors=(), log=lambda text: None):
    messages = []
    config = Config()
    agent = HostAgent(Options(collectors=list(collectors)), "00000000-0000-4000-8000-000000000009",
                      messages.append, log, config)
    agent.apply_config()
    agent.begin(M0, T0_MS)
    return agent, config, messages


def _connection(port, t_ms):
    return {"kind": "connection", "t": t_ms / 1000.0, "protocol": "TCP",
            "local_address": "10.0.0.1", "local_port": port, "remote_address": "1.1.1.1",
            "remote_port": 443, "bytes_in": 1, "bytes_out": 1}


def _items(messages, name):
    return [i for m in messages for e in json.loads(m)["Events"] if e["Name"] == name
            for i in e["Payload"]]


def test_cache_size_from_the_twin_takes_effect_at_the_next_window():
    agent, config, messages = _agent()
    applied, rejected = config.apply({"NetworkActivity_CacheSize": 2, "Login_CacheSize": "x"})
    assert applied == {"NetworkActivity_CacheSize": 2} and "Login_CacheSize" in rejected
    agent.on_config(applied)
    window = 120 * MINUTE  # Medium
    for port in range(5):
        agent.queue.put(_connection(port, T0_MS + port))
    agent.tick(M0 + window, T0_MS + window)          # still 256 entries in this window
    assert len(_items(messages, "ConnectionCreate")) == 5
    for port in range(5):
        agent.queue.put(_connection(port, T0_MS + window + port))
    agent.tick(M0 + 2 * window, T0_MS + 2 * window)  # now 2, the oldest evicted
    kept = [i["local_port"] for i in _items(messages, "ConnectionCreate")[5:]]
    assert kept == [3, 4]
    assert _items(messages, "DroppedEvents")[0]["evicted"] == 3
    assert config["Login_CacheSize"] == 256


def test_disabled_collector_records_nothing_and_window_follows_the_frequency():
    agent, config, messages = _agent()
    assert agent.window_ms("NetworkActivity") == 120 * MINUTE
    config.apply({"NetworkActivity_Disabled": True, "NetworkActivity_MessageFrequency": "High",
                  "CollectorsCore_PriorityIntervals": "1,5,60"})
    assert agent.window_ms("NetworkActivity") == MINUTE
    assert agent.window_ms("Process") == 5 * MINUTE
    agent.queue.put(_connection(1, T0_MS))
    agent.queue.put({"kind": "process", "t": T0_MS / 1000.0, "type": "exec", "pid": 2, "ppid": 1,
                     "uid": 0, "commandline": "ls"})
    agent.close_windows(WINDOWED, T0_MS + 60000)
    assert _items(messages, "ConnectionCreate") == []
    assert len(_items(messages, "ProcessCreate")) == 1


@pytest.mark.requires_root("audit and the netlink process connector")
def test_process_mode_from_the_twin_restarts_the_collector_at_the_next_window():
    logs = []
    agent, config, messages = _agent(["Process"], logs.append)
    agent.start()
    try:
        assert agent.collectors["Process"].mode == "Audit"
        applied, _ = config.apply({"Process_Mode": "Polling", "Process_PollingInterval": 50000})
        agent.on_config(applied)
        assert agent.collectors["Process"].mode == "Audit"  # not inside the window
        agent.close_windows(("Process",), T0_MS + 60000)
        collector = agent.collectors["Process"]
        assert collector.mode == "Polling" and collector.poll_interval == 0.05
        assert "Process collector restarted: Process (Polling every 0.05 s)" in logs
        marker = "twin-polling-marker-%d" % os.getpid()
        subprocess.run([sys.executable, "-c", "import time; time.sleep(0.5)", marker])
        deadline = time.monotonic() + 10
        seen = []
        while not seen and time.monotonic() < deadline:
            time.sleep(0.1)
            agent.close_windows(("Process",), T0_MS + 120000)
            seen = [i for i in _items(messages, "ProcessCreate") if marker in i["commandline"]]
        assert seen, [i["commandline"][:70] for i in _items(messages, "ProcessCreate")]
    finally:
        agent.stop()

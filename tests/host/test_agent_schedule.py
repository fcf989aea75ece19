"""When the host agent closes windows and runs its trigger-based collectors, driven through
tick() with the clocks given by hand (docs/spec.md section 2: window k covers
[t0 + k*W, t0 + (k+1)*W); a new length starts at the end of the window it was set in)."""
import json

from host_sim.agent import HostAgent, Options
from microagent.config import Config

T0_MS = 1767225600000  # wall clock, epoch ms
M0 = 5000000           # monotonic clock, ms
MINUTE = 60000


def _agent(intervals="1,2,3", collectors=()):
    messages, logs = [], []
    config = Config()
    config.apply({"CollectorsCore_PriorityIntervals": intervals})
    agent = HostAgent(Options(collectors=list(collectors)), "00000000-0000-4000-8000-000000000009",
                      messages.append, logs.append, config)
    agent.apply_config()
    agent.begin(M0, T0_MS)
    return agent, config, messages, logs


def _connection(port, t_ms):
    return {"kind": "connection", "t": t_ms / 1000.0, "protocol": "TCP",
            "local_address": "10.0.0.1", "local_port": port, "remote_address": "1.1.1.1",
            "remote_port": 443}


def _events(messages, name):
    return [e for m in messages for e in json.loads(m)["Events"] if e["Name"] == name]


def test_windows_close_on_the_grid_of_the_monotonic_clock():
    # Medium = 2 min: windows [0, 2), [2, 4) ... minutes after the start.
    agent, _, messages, _ = _agent()
    agent.queue.put(_connection(1, T0_MS + 1000))
    agent.tick(M0 + 2 * MINUTE - 1, T0_MS + 2 * MINUTE - 1)
    assert messages == []
    agent.tick(M0 + 2 * MINUTE + 150, T0_MS + 2 * MINUTE + 150)  # noticed 150 ms late
    assert len(_events(messages, "ConnectionCreate")) == 1
    assert agent.window_starts["NetworkActivity"] == T0_MS + 2 * MINUTE
    agent.queue.put(_connection(2, T0_MS + 3 * MINUTE))
    agent.tick(M0 + 4 * MINUTE - 1, T0_MS + 4 * MINUTE - 1)
    assert len(messages) == 1
    agent.tick(M0 + 4 * MINUTE, T0_MS + 4 * MINUTE)
    assert len(messages) == 2


def test_a_stall_closes_the_window_once_and_skips_the_empty_ones():
    # Nothing ran from 1 min to 11 min: [0, 2) closes; [2, 4), [4, 6), [6, 8), [8, 10) are
    # skipped; the open window is [10, 12).
    agent, _, messages, logs = _agent()
    agent.queue.put(_connection(1, T0_MS + MINUTE))
    agent.tick(M0 + MINUTE, T0_MS + MINUTE)
    agent.tick(M0 + 11 * MINUTE, T0_MS + 11 * MINUTE)
    assert len(_events(messages, "ConnectionCreate")) == 1
    assert agent.window_starts["NetworkActivity"] == T0_MS + 10 * MINUTE
    assert any(line.startswith("4 windows skipped (Process, NetworkActivity, Login)")
               for line in logs), logs


def test_setting_the_wall_clock_moves_no_window():
    # The wall clock is set back an hour at 1 min: the window still closes at 2 min of the
    # monotonic clock, stamped with the wall clock's reading.
    agent, _, messages, _ = _agent()
    agent.queue.put(_connection(1, T0_MS + 1000))
    agent.tick(M0 + MINUTE, T0_MS - 59 * MINUTE)
    agent.tick(M0 + 2 * MINUTE, T0_MS - 58 * MINUTE)
    assert len(messages) == 1
    assert agent.window_starts["NetworkActivity"] == T0_MS - 58 * MINUTE


def test_a_new_interval_from_the_twin_takes_effect_at_the_window_end():
    # Medium 2 min; at 1 min the twin sets Medium 5 min: [0, 2) keeps its end, then [2, 7).
    agent, config, messages, _ = _agent()
    applied, _ = config.apply({"CollectorsCore_PriorityIntervals": "1,5,30"})
    agent.on_config(applied)
    agent.queue.put(_connection(1, T0_MS + MINUTE))
    agent.tick(M0 + MINUTE, T0_MS + MINUTE)
    agent.tick(M0 + 2 * MINUTE, T0_MS + 2 * MINUTE)
    assert len(messages) == 1
    agent.queue.put(_connection(2, T0_MS + 3 * MINUTE))
    agent.tick(M0 + 7 * MINUTE - 1, T0_MS + 7 * MINUTE - 1)
    assert len(messages) == 1
    agent.tick(M0 + 7 * MINUTE, T0_MS + 7 * MINUTE)
    assert len(messages) == 2
    assert agent.window_starts["NetworkActivity"] == T0_MS + 7 * MINUTE


def test_trigger_based_collectors_run_at_start_then_once_per_interval():
    # SystemInformation is Low: 3 min. Snapshots at 0 and 3 min; asleep from 4 to 13 min, one
    # snapshot (not three), the next at 15 min.
    agent, _, messages, _ = _agent(collectors=["SystemInformation"])
    agent.tick(M0, T0_MS)
    assert len(_events(messages, "SystemInformation")) == 1
    agent.tick(M0 + 3 * MINUTE - 1, T0_MS + 3 * MINUTE - 1)
    assert len(_events(messages, "SystemInformation")) == 1
    agent.tick(M0 + 3 * MINUTE, T0_MS + 3 * MINUTE)
    assert len(_events(messages, "SystemInformation")) == 2
    agent.tick(M0 + 4 * MINUTE, T0_MS + 4 * MINUTE)
    agent.tick(M0 + 13 * MINUTE, T0_MS + 13 * MINUTE)
    assert len(_events(messages, "SystemInformation")) == 3
    agent.tick(M0 + 15 * MINUTE - 1, T0_MS + 15 * MINUTE - 1)
    assert len(_events(messages, "SystemInformation")) == 3
    agent.tick(M0 + 15 * MINUTE, T0_MS + 15 * MINUTE)
    assert len(_events(messages, "SystemInformation")) == 4



def _process(commandline, t_ms):
    return {"kind": "process", "t": t_ms / 1000.0, "type": "exec", "pid": 7, "ppid": 1,
            "uid": 0, "commandline": commandline}


def _login(t_ms):
    return {"kind": "login", "t": t_ms / 1000.0, "operation": "LoginFailed", "pid": 9,
            "user_name": "root", "executable": "/usr/sbin/sshd", "remote_address": "10.9.9.9"}


def _names(message):
    return [e["Name"] for e in json.loads(message)["Events"]]


def _stamps(message):
    return [item["timestamp"] for e in json.loads(message)["Events"] for item in e["Payload"]]


def test_each_event_collector_closes_on_the_grid_of_its_own_priority():
    # Process High (1 min), NetworkActivity Medium (2 min), Login Low (3 min); T0 is
    # 2026-01-01T00:00:00Z.
    agent, config, messages, _ = _agent()
    config.apply({"Process_MessageFrequency": "High", "Login_MessageFrequency": "Low"})
    agent.begin(M0, T0_MS)  # the frequencies hold from the first window
    agent.queue.put(_process("/bin/true", T0_MS + 10000))
    agent.queue.put(_connection(1, T0_MS + 20000))
    agent.queue.put(_login(T0_MS + 30000))
    agent.tick(M0 + MINUTE, T0_MS + MINUTE)
    assert [_names(m) for m in messages] == [["ProcessCreate"]]
    assert _stamps(messages[0]) == ["2026-01-01T00:00:10.000Z"]
    agent.queue.put(_process("/bin/false", T0_MS + 90000))
    agent.tick(M0 + 2 * MINUTE, T0_MS + 2 * MINUTE)
    # NetworkActivity's [0, 2) and Process's [1, 2) close on the same tick but started apart:
    # each goes in messages of its own, the older window first.
    assert [_names(m) for m in messages[1:]] == [["ConnectionCreate"], ["ProcessCreate"]]
    assert _stamps(messages[1]) == ["2026-01-01T00:00:20.000Z"]
    assert _stamps(messages[2]) == ["2026-01-01T00:01:30.000Z"]
    agent.tick(M0 + 3 * MINUTE - 1, T0_MS + 3 * MINUTE - 1)
    assert len(messages) == 3
    agent.tick(M0 + 3 * MINUTE, T0_MS + 3 * MINUTE)  # Process's [2, 3) had nothing
    assert [_names(m) for m in messages[3:]] == [["Login"]]
    assert _stamps(messages[3]) == ["2026-01-01T00:00:30.000Z"]
    assert agent.window_starts == {"Process": T0_MS + 3 * MINUTE,
                                   "NetworkActivity": T0_MS + 2 * MINUTE,
                                   "Login": T0_MS + 3 * MINUTE}


def test_windows_of_the_same_length_share_their_messages():
    # All three Medium (the default): one message carries the three kinds, as one window would.
    agent, _, messages, _ = _agent()
    agent.queue.put(_process("/bin/true", T0_MS + 10000))
    agent.queue.put(_connection(1, T0_MS + 20000))
    agent.queue.put(_login(T0_MS + 30000))
    agent.tick(M0 + 2 * MINUTE, T0_MS + 2 * MINUTE)
    assert [_names(m) for m in messages] == [["ProcessCreate", "ConnectionCreate", "Login"]]


def test_a_full_cache_is_reported_in_its_own_collectors_window():
    # Process High (1 min) with room for one entry, NetworkActivity Medium (2 min) with room
    # for one: each DroppedEvents item goes out when its collector's window closes.
    agent, config, messages, _ = _agent()
    config.apply({"Process_MessageFrequency": "High", "Process_CacheSize": 1,
                  "NetworkActivity_CacheSize": 1})
    agent.apply_config()
    agent.begin(M0, T0_MS)
    agent.queue.put(_process("/bin/a", T0_MS + 1000))
    agent.queue.put(_process("/bin/b", T0_MS + 2000))
    agent.queue.put(_connection(1, T0_MS + 3000))
    agent.queue.put(_connection(2, T0_MS + 4000))
    agent.tick(M0 + MINUTE, T0_MS + MINUTE)
    dropped = [(item["collector"], item["evicted"]) for m in messages
               for e in json.loads(m)["Events"] if e["Name"] == "DroppedEvents"
               for item in e["Payload"]]
    assert dropped == [("ProcessCreate", 1)]
    agent.tick(M0 + 2 * MINUTE, T0_MS + 2 * MINUTE)
    dropped = [(item["collector"], item["evicted"]) for m in messages
               for e in json.loads(m)["Events"] if e["Name"] == "DroppedEvents"
               for item in e["Payload"]]
    assert dropped == [("ProcessCreate", 1), ("ConnectionCreate", 1)]

"""The host engine: the core's Engine with Linux overflow semantics.

When a cache is full, the oldest entry (earliest first occurrence in the window) is evicted and
counted, and the new one is cached (docs/spec.md section 4); an evicted connection entry goes to
the engine's overflow summary (microagent.overflow), as a dropped event does on the firmware. Entries live in insertion-ordered dicts; a
queue of their keys finds the oldest in O(1) (the first key of a dict that keeps losing its first
entries costs a scan over the deleted slots: 20 % of the storm ingest rate). The event model,
window logic, DNS join and message encoder are the firmware core's (microagent.*), not copies.
"""
from collections import deque

from microagent import events
from microagent.cache import HIT, LOST, NEW
from microagent.encode import JSON
from microagent.engine import Engine, make_encoder


class _EvictingCache:
    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError("cache capacity must be at least 1")
        self.capacity = capacity
        self.entries = {}
        self.arrivals = deque()  # the keys of entries, oldest first
        self.dropped = 0
        self.evicted = 0
        self.last_lost = None  # the entry the last LOST record evicted

    @property
    def count(self):
        return len(self.entries)

    def _insert(self, key, entry):
        entries = self.entries
        status = NEW
        if len(entries) >= self.capacity:
            self.last_lost = entries.pop(self.arrivals.popleft())
            self.evicted += 1
            status = LOST
        entries[key] = entry
        self.arrivals.append(key)
        return status

    def rows(self, row):
        # Each entry is already laid out as the core's row for its collector.
        return iter(self.entries.values())

    def reset(self):
        self.entries = {}
        self.arrivals = deque()
        self.dropped = 0
        self.evicted = 0
        self.last_lost = None


class HostProcessCache(_EvictingCache):
    def record(self, offset_ms, commandline, uid, pid, ppid, type_code, executable, user_name):
        entry = self.entries.get((commandline, uid))
        if entry is not None:
            entry[6] += 1
            return HIT
        return self._insert((commandline, uid), [offset_ms, pid, ppid, uid, commandline,
                                                 type_code, 1, executable, user_name])


class HostNetworkCache(_EvictingCache):
    def record(self, offset_ms, protocol, local_address, local_port, remote_address,
               remote_port, bytes_in, bytes_out, direction, hit=1):
        key = (local_port, remote_port, protocol, local_address, remote_address)
        entry = self.entries.get(key)
        if entry is not None:
            entry[6] += bytes_in
            entry[7] += bytes_out
            entry[8] += hit
            return HIT
        return self._insert(key, [offset_ms, local_address, remote_address, local_port,
                                  remote_port, protocol, bytes_in, bytes_out, 1, direction])


class HostDnsTable(_EvictingCache):
    def record(self, host_name, address):
        entry = self.entries.get(address)
        if entry is not None:
            entry[0] += 1
            entry[1] = host_name
            return HIT
        return self._insert(address, [1, host_name])

    def lookup(self, address):
        entry = self.entries.get(address)
        return (entry[0], entry[1]) if entry is not None else (0, None)


class HostLoginCache:
    """Logins are never aggregated: a bounded queue that drops its oldest entry when full."""

    def __init__(self, capacity):
        if capacity < 1:
            raise ValueError("cache capacity must be at least 1")
        self.capacity = capacity
        self.entries = deque(maxlen=capacity)
        self.dropped = 0
        self.evicted = 0

    @property
    def count(self):
        return len(self.entries)

    def record(self, offset_ms, operation, pid, user_name, executable, remote_address):
        status = NEW
        if len(self.entries) == self.capacity:
            self.evicted += 1
            status = LOST
        self.entries.append((offset_ms, operation, pid, user_name, executable, remote_address))
        return status

    def rows(self, row):
        return iter(self.entries)

    def resize(self, capacity):
        """A new capacity (twin configuration), keeping the newest entries."""
        self.capacity = capacity
        self.entries = deque(self.entries, maxlen=capacity)

    def reset(self):
        self.entries.clear()
        self.dropped = 0
        self.evicted = 0


def build_host_engine(cache_size, sink, warn, agent_id, max_message_size=4096,
                      utc_offset_minutes=0, cache_sizes=None, encoding=JSON):
    """An Engine with Linux semantics; CACHE_SIZES may override per collector name; ENCODING
    is "json" or "compact"."""
    sizes = dict.fromkeys((events.PROCESS, events.CONNECTION, events.LOGIN, events.DNS),
                          cache_size)
    sizes.update(cache_sizes or {})
    encoder = make_encoder(encoding, agent_id, sink, max_message_size, utc_offset_minutes)
    return Engine(HostProcessCache(sizes[events.PROCESS]),
                  HostNetworkCache(sizes[events.CONNECTION]),
                  HostLoginCache(sizes[events.LOGIN]), HostDnsTable(sizes[events.DNS]),
                  encoder, warn)

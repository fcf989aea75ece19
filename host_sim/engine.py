"""The host engine: the core's Engine with Linux overflow semantics.

When a cache is full, the oldest entry (earliest first occurrence in the window) is evicted and
counted, and the new one is cached (docs/spec.md section 4); an evicted connection entry goes to
the engine's overflow summary, as a dropped event does on the firmware. Entries live in
insertion-ordered dicts; a queue of their keys finds the oldest in O(1) (the first key of a dict
that keeps losing its first entries costs a scan over the deleted slots: 20 % of the storm ingest
rate). The event model, window logic, DNS join, overflow rules and message encoder are the
firmware core's (microagent.*), not copies.
"""
from collections import deque

from microagent import events
from microagent.cache import HIT, LOST, NEW
from microagent.encode import JSON
from microagent.engine import Engine, make_encoder
from microagent.overflow import ROWS, ConnectionOverflow

_MAX_COUNT = 0xFFFFFFFF  # where the summary's counts saturate (an array of "I")


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
    both_families = True  # keyed on canonical text: IPv4 and IPv6 in one cache
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


class HostConnectionOverflow(ConnectionOverflow):
    """The core's overflow summary, found by the evicted entry's address text. Most of a flood's
    evictions fold into a row the summary already has, or into the rest row once the rules can
    send nothing else there; both are a dict lookup here, without parsing the address or
    scanning the rows (79 % of the busy-gateway trace's connection records evict). Any other
    fold takes the core's rules (microagent.overflow), so the rows are the firmware's.
    Addresses are canonical text (the engine's); an IPv6 one is numbered in the window, the
    number standing in the row for its halves (the firmware sends IPv6 losses to the rest row)."""

    def __init__(self, rows=ROWS):
        super().__init__(rows)
        self._texts = []  # each row's address text, in row order
        self._rows_of = {}  # address text -> its rows, in row order
        # Full, no address with several rows and every row seen both ways: a lost connection
        # without a row of its address and protocol goes to the rest row (rule 6), and stays
        # so until rows change (counts only grow).
        self._settled = False
        self._numbers = {}  # IPv6 address text -> its number this window
        self._numbered = []  # the IPv6 address texts by number

    def address_text(self, high, low):
        return self._numbered[(high << 16) | low]

    def add_text(self, address, port, protocol, hits, bytes_in, bytes_out):
        row = -1
        group = False
        rows = self._rows_of.get(address)
        if rows is not None:
            keys = self.keys
            family_protocol = protocol | 4 if ":" in address else protocol
            for r in rows:
                k = r << 2
                if keys[k + 3] >> 1 == family_protocol:
                    if keys[k + 3] & 1 or keys[k + 2] == port:
                        row = r
                        break
                    group = True
        if row < 0:
            if group or not self._settled:
                self._fold(address, port, protocol, hits, bytes_in, bytes_out)
                return
            row = self.capacity
        # ConnectionOverflow._add, inlined: this is the flood's per-eviction path.
        counts = self.counts
        c = row * 3
        total = counts[c] + hits
        counts[c] = total if total < _MAX_COUNT else _MAX_COUNT
        total = counts[c + 1] + bytes_in
        counts[c + 1] = total if total < _MAX_COUNT else _MAX_COUNT
        total = counts[c + 2] + bytes_out
        counts[c + 2] = total if total < _MAX_COUNT else _MAX_COUNT

    def _fold(self, address, port, protocol, hits, bytes_in, bytes_out):
        """The core's rules; _remove and the append here keep the index of rows by address."""
        if ":" in address:  # IPv6: numbered, the number kept in the halves (address_text)
            number = self._numbers.get(address)
            if number is None:
                number = self._numbers[address] = len(self._numbered)
                self._numbered.append(address)
            ConnectionOverflow.add(self, number >> 16, number & 0xFFFF, port, protocol | 4, hits,
                                   bytes_in, bytes_out)
        else:
            ConnectionOverflow.add_text(self, address, port, protocol, hits, bytes_in, bytes_out)
        count = self.count
        if count > len(self._texts):  # the rules appended a row: always the last
            self._texts.append(address)
            self._rows_of.setdefault(address, []).append(count - 1)
        c = (count - 1) * 3
        counts = self.counts
        # The last row first: a flood's newest row is often the one that went one way.
        self._settled = (count == self.capacity and not self._shared and counts[c + 1] > 0
                         and counts[c + 2] > 0 and self._one_way() < 0)

    def _remove(self, row):
        # The core's _remove, its row-by-row moves done as two slice copies; then the index:
        # the removed row leaves it, the rows after it move up one.
        last = self.count - 1
        keys = self.keys
        counts = self.counts
        keys[row << 2:last << 2] = keys[(row + 1) << 2:(last + 1) << 2]
        counts[row * 3:last * 3] = counts[(row + 1) * 3:(last + 1) * 3]
        self.count = last
        texts = self._texts
        rows_of = self._rows_of
        text = texts.pop(row)
        own = rows_of[text]
        own.remove(row)
        if not own:
            del rows_of[text]
        for r in range(row, last):
            moved = rows_of[texts[r]]
            moved[moved.index(r + 1)] = r

    def reset(self):
        ConnectionOverflow.reset(self)
        self._texts.clear()
        self._rows_of.clear()
        self._settled = False
        self._numbers.clear()
        self._numbered.clear()


class CanonicalTexts:
    """canonical_address memoised: a host sees the same few IPv6 spellings over and over, and
    parsing one in Python costs more than recording its event. Bounded: emptied when full."""

    def __init__(self, limit=4096):
        self.limit = limit
        self.known = {}

    def __call__(self, text):
        try:
            return self.known[text]
        except KeyError:
            canonical = events.canonical_address(text)
            if len(self.known) >= self.limit:
                self.known.clear()
            self.known[text] = canonical
            return canonical


def build_host_engine(cache_size, sink, warn, agent_id, max_message_size=4096,
                      utc_offset_minutes=0, cache_sizes=None, encoding=JSON):
    """An Engine with Linux semantics; CACHE_SIZES may override per collector name; ENCODING
    is "json" or "compact"."""
    sizes = dict.fromkeys((events.PROCESS, events.CONNECTION, events.LOGIN, events.DNS),
                          cache_size)
    sizes.update(cache_sizes or {})
    encoder = make_encoder(encoding, agent_id, sink, max_message_size, utc_offset_minutes)
    engine = Engine(HostProcessCache(sizes[events.PROCESS]),
                    HostNetworkCache(sizes[events.CONNECTION]),
                    HostLoginCache(sizes[events.LOGIN]), HostDnsTable(sizes[events.DNS]),
                    encoder, warn)
    engine.overflow = HostConnectionOverflow()  # the core's summary, found by address text
    engine.canonical = CanonicalTexts()
    return engine

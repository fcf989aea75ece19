# Fixed-slot caches with the RTOS overflow policy (docs/spec.md section 4): when a cache is full, a new
# distinct entry is dropped and counted; entries already cached keep aggregating.
#
# Storage is columnar and allocated once at construction: typed arrays for numbers, lists of
# references for strings the caller already holds, and an open-addressing index of slot numbers.
# Recording a hit allocates nothing. Slots fill in first-occurrence order, so iterating slots
# 0..count-1 yields entries oldest first, as both engines report them.
from array import array

from microagent.events import format_ipv4, parse_ipv4

NEW = 0
HIT = 1
LOST = 2

_HASH_MASK = 0x3FFFFFFF
_EMPTY = -1


def _index_size(capacity):
    size = 2
    while size < capacity * 2:
        size <<= 1
    return size


_ITEM_BYTES = {"h": 2, "H": 2, "i": 4, "I": 4}


def _zeros(typecode, length):
    return array(typecode, bytes(_ITEM_BYTES[typecode] * length))


def _clear(*columns):
    # Drops the window's string references so the heap can reclaim them.
    for column in columns:
        for slot in range(len(column)):
            column[slot] = None


def _spread(h):
    # Folds high bits into the low ones the index uses; every value stays below 2**30, so
    # 32-bit boards never make a big int.
    return (h ^ (h >> 10) ^ (h >> 20)) & _HASH_MASK


class _IndexedCache:
    """Slot allocation and the open-addressing index shared by the aggregating caches."""

    def __init__(self, capacity):
        if capacity < 0:
            raise ValueError("cache capacity must be at least 0 (0: collector off)")
        self.capacity = capacity
        self.count = 0
        self.dropped = 0
        self.evicted = 0
        self._index = _zeros("h" if capacity < 0x7FFF else "i", _index_size(capacity))
        self._mask = len(self._index) - 1
        self._clear_index()

    def _clear_index(self):
        index = self._index
        for i in range(len(index)):
            index[i] = _EMPTY

    def reset(self):
        self._clear_index()
        self.count = 0
        self.dropped = 0
        self.evicted = 0


class ProcessCache(_IndexedCache):
    """ProcessCreate entries: identical when commandline and uid are equal."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.commandline = [None] * capacity
        self.executable = [None] * capacity
        self.user_name = [None] * capacity
        self.uid = _zeros("i", capacity)
        self.pid = _zeros("i", capacity)
        self.ppid = _zeros("i", capacity)
        self.kind = bytearray(capacity)
        self.hits = _zeros("I", capacity)
        self.first_ms = _zeros("I", capacity)

    def record(self, offset_ms, commandline, uid, pid, ppid, type_code, executable, user_name):
        h = _spread((hash(commandline) & _HASH_MASK) ^ ((uid & 0xFFFF) << 5))
        mask = self._mask
        index = self._index
        b = h & mask
        while True:
            slot = index[b]
            if slot == _EMPTY:
                break
            if self.uid[slot] == uid and self.commandline[slot] == commandline:
                if self.hits[slot] < 0xFFFFFFFF:
                    self.hits[slot] += 1
                return HIT
            b = (b + 1) & mask
        if self.count == self.capacity:
            self.dropped += 1
            return LOST
        slot = self.count
        self.count = slot + 1
        index[b] = slot
        self.commandline[slot] = commandline
        self.executable[slot] = executable
        self.user_name[slot] = user_name
        self.uid[slot] = uid
        self.pid[slot] = pid
        self.ppid[slot] = ppid
        self.kind[slot] = type_code
        self.hits[slot] = 1
        self.first_ms[slot] = offset_ms
        return NEW

    def rows(self, row):
        """Fills ROW with (offset_ms, pid, ppid, uid, commandline, type_code, hits,
        executable, user_name) per entry, oldest first, and yields it."""
        for slot in range(self.count):
            row[0] = self.first_ms[slot]
            row[1] = self.pid[slot]
            row[2] = self.ppid[slot]
            row[3] = self.uid[slot]
            row[4] = self.commandline[slot]
            row[5] = self.kind[slot]
            row[6] = self.hits[slot]
            row[7] = self.executable[slot]
            row[8] = self.user_name[slot]
            yield row

    def reset(self):
        super().reset()
        _clear(self.commandline, self.executable, self.user_name)


class NetworkCache(_IndexedCache):
    """ConnectionCreate entries keyed on local/remote address and port and protocol.

    Addresses are kept as two 16-bit halves; bytes and hits saturate at 2**32 - 1.
    """

    last_lost = None  # drop-new: what a full cache loses is the event being recorded
    both_families = False  # IPv4 only: IPv6 goes to microagent.cache6's cache

    def __init__(self, capacity):
        super().__init__(capacity)
        self.addresses = _zeros("H", 4 * capacity)  # local hi, lo, remote hi, lo
        self.ports = _zeros("H", 2 * capacity)  # local, remote
        self.protocol_direction = bytearray(capacity)  # protocol << 2 | direction
        self.bytes_in = _zeros("I", capacity)
        self.bytes_out = _zeros("I", capacity)
        self.hits = _zeros("I", capacity)
        self.first_ms = _zeros("I", capacity)
        self._scratch = array("H", [0, 0, 0, 0])

    def record(self, offset_ms, protocol, local_address, local_port, remote_address,
               remote_port, bytes_in, bytes_out, direction, hit=1):
        """Records a connection given dotted IPv4 strings (validated by the caller). HIT=0
        adds the bytes of a connection already counted (it counts once if new this window)."""
        scratch = self._scratch
        parse_ipv4(local_address, scratch, 0)
        parse_ipv4(remote_address, scratch, 2)
        return self.record_packed(offset_ms, protocol, scratch[0], scratch[1], local_port,
                                  scratch[2], scratch[3], remote_port, bytes_in, bytes_out,
                                  direction, hit)

    def record_packed(self, offset_ms, protocol, local_high, local_low, local_port, remote_high,
                      remote_low, remote_port, bytes_in, bytes_out, direction, hit=1):
        """Records a connection given addresses as 16-bit halves (the board's hot path)."""
        # Inlined rather than calls: calls dominate the cost under MicroPython. Every term stays
        # below 2**30, so 32-bit boards never make a big int.
        h = (local_port ^ (remote_port << 5) ^ (remote_low << 3) ^ (remote_high << 11)
             ^ (local_low << 7) ^ (local_high << 13) ^ (protocol << 17))
        h = h ^ (h >> 10) ^ (h >> 20)
        mask = self._mask
        index = self._index
        addresses = self.addresses
        ports = self.ports
        b = h & mask
        while True:
            slot = index[b]
            if slot == _EMPTY:
                break
            a = slot << 2
            p = slot << 1
            if (ports[p] == local_port and ports[p + 1] == remote_port
                    and addresses[a + 2] == remote_high and addresses[a + 3] == remote_low
                    and addresses[a] == local_high and addresses[a + 1] == local_low
                    and (self.protocol_direction[slot] >> 2) == protocol):
                self._add(slot, bytes_in, bytes_out, hit)
                return HIT
            b = (b + 1) & mask
        if self.count == self.capacity:
            self.dropped += 1
            return LOST
        slot = self.count
        self.count = slot + 1
        index[b] = slot
        a = slot << 2
        addresses[a] = local_high
        addresses[a + 1] = local_low
        addresses[a + 2] = remote_high
        addresses[a + 3] = remote_low
        ports[slot << 1] = local_port
        ports[(slot << 1) + 1] = remote_port
        self.protocol_direction[slot] = (protocol << 2) | direction
        self.bytes_in[slot] = 0
        self.bytes_out[slot] = 0
        self.hits[slot] = 0
        self.first_ms[slot] = offset_ms
        self._add(slot, bytes_in, bytes_out, 1)
        return NEW

    def _add(self, slot, bytes_in, bytes_out, hit):
        total = self.bytes_in[slot] + bytes_in
        self.bytes_in[slot] = total if total < 0xFFFFFFFF else 0xFFFFFFFF
        total = self.bytes_out[slot] + bytes_out
        self.bytes_out[slot] = total if total < 0xFFFFFFFF else 0xFFFFFFFF
        if hit and self.hits[slot] < 0xFFFFFFFF:
            self.hits[slot] += 1

    def rows(self, row):
        """Fills ROW with (offset_ms, local_address, remote_address, local_port, remote_port,
        protocol, bytes_in, bytes_out, hits, direction) per entry, oldest first."""
        addresses = self.addresses
        for slot in range(self.count):
            a = slot << 2
            row[0] = self.first_ms[slot]
            row[1] = format_ipv4(addresses[a], addresses[a + 1])
            row[2] = format_ipv4(addresses[a + 2], addresses[a + 3])
            row[3] = self.ports[slot << 1]
            row[4] = self.ports[(slot << 1) + 1]
            row[5] = self.protocol_direction[slot] >> 2
            row[6] = self.bytes_in[slot]
            row[7] = self.bytes_out[slot]
            row[8] = self.hits[slot]
            row[9] = self.protocol_direction[slot] & 3
            yield row


class DnsTable(_IndexedCache):
    """Per-window resolutions: address -> number of dns events and the latest host name."""

    def __init__(self, capacity):
        super().__init__(capacity)
        self.addresses = _zeros("H", 2 * capacity)
        self.hits = _zeros("I", capacity)
        self.host_name = [None] * capacity
        self._scratch = array("H", [0, 0])

    def _find(self, high, low):
        h = _spread((high << 13) ^ low)
        mask = self._mask
        index = self._index
        b = h & mask
        while True:
            slot = index[b]
            if slot == _EMPTY:
                return -1 - b
            if self.addresses[slot << 1] == high and self.addresses[(slot << 1) + 1] == low:
                return slot
            b = (b + 1) & mask

    def record(self, host_name, address):
        scratch = self._scratch
        parse_ipv4(address, scratch, 0)
        return self.record_packed(host_name, scratch[0], scratch[1])

    def record_packed(self, host_name, high, low):
        found = self._find(high, low)
        if found >= 0:
            if self.hits[found] < 0xFFFFFFFF:
                self.hits[found] += 1
            self.host_name[found] = host_name
            return HIT
        if self.count == self.capacity:
            self.dropped += 1
            return LOST
        slot = self.count
        self.count = slot + 1
        self._index[-1 - found] = slot
        self.addresses[slot << 1] = high
        self.addresses[(slot << 1) + 1] = low
        self.hits[slot] = 1
        self.host_name[slot] = host_name
        return NEW

    def lookup(self, address):
        """(dns hit count, latest host name) for dotted ADDRESS, or (0, None)."""
        scratch = self._scratch
        if not parse_ipv4(address, scratch, 0):
            return 0, None
        slot = self._find(scratch[0], scratch[1])
        if slot < 0:
            return 0, None
        return self.hits[slot], self.host_name[slot]

    def reset(self):
        super().reset()
        _clear(self.host_name)


class NoCache:
    """The cache of a collector that does not run here (Process and Login on a board): it holds
    nothing and costs one small object; an event recorded into it is counted as dropped."""

    capacity = 0
    count = 0
    dropped = 0
    evicted = 0

    def record(self, *event):
        self.dropped += 1
        return LOST

    def rows(self, row):
        return ()

    def reset(self):
        self.dropped = 0


class LoginCache:
    """Login entries: never aggregated, every event is its own entry."""

    def __init__(self, capacity):
        if capacity < 0:
            raise ValueError("cache capacity must be at least 0 (0: collector off)")
        self.capacity = capacity
        self.count = 0
        self.dropped = 0
        self.evicted = 0
        self.operation = bytearray(capacity)
        self.pid = _zeros("i", capacity)
        self.user_name = [None] * capacity
        self.executable = [None] * capacity
        self.remote_address = [None] * capacity
        self.first_ms = _zeros("I", capacity)

    def record(self, offset_ms, operation, pid, user_name, executable, remote_address):
        if self.count == self.capacity:
            self.dropped += 1
            return LOST
        slot = self.count
        self.count = slot + 1
        self.operation[slot] = operation
        self.pid[slot] = pid
        self.user_name[slot] = user_name
        self.executable[slot] = executable
        self.remote_address[slot] = remote_address
        self.first_ms[slot] = offset_ms
        return NEW

    def rows(self, row):
        """Fills ROW with (offset_ms, operation, pid, user_name, executable, remote_address)."""
        for slot in range(self.count):
            row[0] = self.first_ms[slot]
            row[1] = self.operation[slot]
            row[2] = self.pid[slot]
            row[3] = self.user_name[slot]
            row[4] = self.executable[slot]
            row[5] = self.remote_address[slot]
            yield row

    def reset(self):
        _clear(self.user_name, self.executable, self.remote_address)
        self.count = 0
        self.dropped = 0
        self.evicted = 0

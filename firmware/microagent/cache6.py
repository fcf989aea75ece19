# The firmware's IPv6 caches (docs/spec.md section 4), beside the IPv4 ones of microagent.cache as
# the RTOS module kept IPv6 in a pool of its own: drop-new, columnar, allocated once. A module of
# their own so that a board without IPv6 loads none of this code.
from array import array

from microagent.cache import (HIT, LOST, NEW, _EMPTY, DnsTable, NetworkCache,
                              _IndexedCache, _spread, _zeros)
from microagent.events import format_address, parse_address


class NetworkCache6(_IndexedCache):
    """NetworkCache's IPv6 twin (the RTOS module's pool of its own): addresses as eight 16-bit
    groups each; a connection with one IPv4 end keeps it IPv4-mapped (reported as IPv4)."""

    last_lost = None

    def __init__(self, capacity):
        super().__init__(capacity)
        self.addresses = _zeros("H", 16 * capacity)  # local groups, then remote groups
        self.ports = _zeros("H", 2 * capacity)
        self.protocol_direction = bytearray(capacity)
        self.bytes_in = _zeros("I", capacity)
        self.bytes_out = _zeros("I", capacity)
        self.hits = _zeros("I", capacity)
        self.first_ms = _zeros("I", capacity)

    def record_packed(self, offset_ms, protocol, local, la, local_port, remote, ra, remote_port,
                      bytes_in, bytes_out, direction, hit=1):
        """Records a connection whose addresses are the eight groups at LOCAL[la..] and
        REMOTE[ra..] (the caller's arrays: nothing is allocated)."""
        h = local_port ^ (remote_port << 5) ^ (protocol << 17)
        for i in range(8):  # every term below 2**30: no big int on a 32-bit board
            h = ((h & 0x7FFFFFF) << 3) ^ (h >> 27) ^ remote[ra + i] ^ (local[la + i] << 7)
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
            p = slot << 1
            if (ports[p] == local_port and ports[p + 1] == remote_port
                    and (self.protocol_direction[slot] >> 2) == protocol):
                a = slot << 4
                same = True
                for i in range(8):
                    if addresses[a + 8 + i] != remote[ra + i] or addresses[a + i] != local[la + i]:
                        same = False
                        break
                if same:
                    self._add(slot, bytes_in, bytes_out, hit)
                    return HIT
            b = (b + 1) & mask
        if self.count == self.capacity:
            self.dropped += 1
            return LOST
        slot = self.count
        self.count = slot + 1
        index[b] = slot
        a = slot << 4
        for i in range(8):
            addresses[a + i] = local[la + i]
            addresses[a + 8 + i] = remote[ra + i]
        ports[slot << 1] = local_port
        ports[(slot << 1) + 1] = remote_port
        self.protocol_direction[slot] = (protocol << 2) | direction
        self.bytes_in[slot] = 0
        self.bytes_out[slot] = 0
        self.hits[slot] = 0
        self.first_ms[slot] = offset_ms
        self._add(slot, bytes_in, bytes_out, 1)
        return NEW

    _add = NetworkCache._add  # the same saturating counts

    def rows(self, row):
        """NetworkCache.rows for this cache's entries."""
        addresses = self.addresses
        for slot in range(self.count):
            a = slot << 4
            row[0] = self.first_ms[slot]
            row[1] = format_address(addresses, a, 8)
            row[2] = format_address(addresses, a + 8, 8)
            row[3] = self.ports[slot << 1]
            row[4] = self.ports[(slot << 1) + 1]
            row[5] = self.protocol_direction[slot] >> 2
            row[6] = self.bytes_in[slot]
            row[7] = self.bytes_out[slot]
            row[8] = self.hits[slot]
            row[9] = self.protocol_direction[slot] & 3
            yield row


class DnsTable6(DnsTable):
    """DnsTable for IPv6 answers (AAAA): eight groups per address."""

    def __init__(self, capacity):
        _IndexedCache.__init__(self, capacity)
        self.addresses = _zeros("H", 8 * capacity)
        self.hits = _zeros("I", capacity)
        self.host_name = [None] * capacity
        self._scratch = array("H", bytes(16))

    def _find6(self, groups, at):
        h = 0
        for i in range(8):
            h = ((h & 0x7FFFFFF) << 3) ^ (h >> 27) ^ groups[at + i]
        mask = self._mask
        index = self._index
        addresses = self.addresses
        b = _spread(h) & mask
        while True:
            slot = index[b]
            if slot == _EMPTY:
                return -1 - b
            a = slot << 3
            i = 0
            while i < 8 and addresses[a + i] == groups[at + i]:
                i += 1
            if i == 8:
                return slot
            b = (b + 1) & mask

    def record_packed(self, host_name, groups, at=0):
        found = self._find6(groups, at)
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
        a = slot << 3
        for i in range(8):
            self.addresses[a + i] = groups[at + i]
        self.hits[slot] = 1
        self.host_name[slot] = host_name
        return NEW

    def record(self, host_name, address):
        if parse_address(address, self._scratch, 0) == 8:
            return self.record_packed(host_name, self._scratch)
        return NEW

    def lookup(self, address):
        """(dns hit count, latest host name) for IPv6 ADDRESS text, or (0, None)."""
        if parse_address(address, self._scratch, 0) != 8:
            return 0, None
        slot = self._find6(self._scratch, 0)
        if slot < 0:
            return 0, None
        return self.hits[slot], self.host_name[slot]

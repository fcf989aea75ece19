# The overflow summary (docs/spec.md section 4): what the network cache lost in a window, folded
# into at most ROWS rows keyed by (remote address, remote port, protocol), so a flood cannot hide
# an attack's connections. Both engines use it: the firmware folds the events its full cache
# drops, the host the entries it evicts.
#
# Storage is allocated once (two typed arrays); folding allocates nothing. Rows are an ordered
# list: new rows are appended, a removed row's followers move up one. The rules, in order, for a
# lost (address, port, protocol) with its hits and bytes:
#   1. a row of that address and protocol with that port, or with its ports merged: add to it;
#   2. a free row: append one;
#   3. rows of that address and protocol already: merge them into the first (ports merged);
#   4. some address has several rows: merge the one with the most (the first on a tie);
#   5. a row that has not seen bytes both ways: the first such goes to the rest row;
#   6. otherwise the lost traffic goes to the rest row itself.
# So a row that exchanged bytes both ways is never dropped, only merged by address.
from array import array

from microagent.events import PROTOCOLS, format_ipv4, parse_ipv4

ROWS = 16  # 17 items (with the rest row) stay within one 4 KB JSON message
SCOPES = ("destination", "address", "rest")
_MAX = 0xFFFFFFFF


class ConnectionOverflow:
    """The window's summary of lost connections: .count rows, and the rest row in the last
    counts triple. Counts saturate at 2**32 - 1."""

    def __init__(self, rows=ROWS):
        self.capacity = rows
        self.count = 0
        self._shared = 0  # rows with an earlier row of the same address and protocol
        # Per row: address high and low halves, remote port, protocol << 1 | ports merged (the
        # host adds 4 to the protocol of an IPv6 address, whose halves then number its text).
        self.keys = array("H", bytes(8 * rows))
        # Per row, then the rest row: hits, bytes in, bytes out.
        self.counts = array("I", bytes(12 * (rows + 1)))
        self._scratch = None  # made on the first add_text: a board only calls add()

    @property
    def lost(self):
        """True when anything was folded in this window."""
        rest = 3 * self.capacity
        counts = self.counts
        return self.count > 0 or counts[rest] or counts[rest + 1] or counts[rest + 2]

    def add_text(self, address, port, protocol, hits, bytes_in, bytes_out):
        """add() with a dotted IPv4 ADDRESS; an IPv6 one goes to the rest row (add_rest)."""
        scratch = self._scratch
        if scratch is None:
            scratch = self._scratch = array("H", [0, 0])
        if parse_ipv4(address, scratch, 0):
            self.add(scratch[0], scratch[1], port, protocol, hits, bytes_in, bytes_out)
        else:
            self.add_rest(hits, bytes_in, bytes_out)

    def add_rest(self, hits, bytes_in, bytes_out):
        """A lost IPv6 connection on a board: the rows keep IPv4 addresses only (16 bytes more
        per row would not fit the ESP32's agent budget), so it counts in the rest row."""
        self._add(self.capacity, hits, bytes_in, bytes_out)

    def add(self, high, low, port, protocol, hits, bytes_in, bytes_out):
        keys = self.keys
        count = self.count
        group = -1
        for row in range(count):
            k = row << 2
            if (keys[k + 1] == low and keys[k] == high and (keys[k + 3] >> 1) == protocol):
                if keys[k + 3] & 1 or keys[k + 2] == port:
                    self._add(row, hits, bytes_in, bytes_out)
                    return
                if group < 0:
                    group = row
        if count == self.capacity:
            if group >= 0:
                self._merge(group)
                self._add(group, hits, bytes_in, bytes_out)
                return
            if self._shared:
                self._merge(self._largest_group())
            else:
                victim = self._one_way()
                if victim < 0:
                    self._add(self.capacity, hits, bytes_in, bytes_out)
                    return
                self._to_rest(victim)
            count = self.count
        elif group >= 0:
            self._shared += 1
        k = count << 2
        keys[k] = high
        keys[k + 1] = low
        keys[k + 2] = port
        keys[k + 3] = protocol << 1
        c = count * 3
        self.counts[c] = 0
        self.counts[c + 1] = 0
        self.counts[c + 2] = 0
        self.count = count + 1
        self._add(count, hits, bytes_in, bytes_out)

    def _add(self, row, hits, bytes_in, bytes_out):
        counts = self.counts
        c = row * 3
        total = counts[c] + hits
        counts[c] = total if total < _MAX else _MAX
        total = counts[c + 1] + bytes_in
        counts[c + 1] = total if total < _MAX else _MAX
        total = counts[c + 2] + bytes_out
        counts[c + 2] = total if total < _MAX else _MAX

    def _same_group(self, a, b):
        keys = self.keys
        a <<= 2
        b <<= 2
        return (keys[a] == keys[b] and keys[a + 1] == keys[b + 1]
                and (keys[a + 3] >> 1) == (keys[b + 3] >> 1))

    def _largest_group(self):
        # O(rows**2), only when the summary is full and some address has several rows.
        best = -1
        best_size = 1
        for row in range(self.count):
            size = 0
            for other in range(row, self.count):
                if self._same_group(row, other):
                    size += 1
            if size > best_size:
                best = row
                best_size = size
        return best

    def _merge(self, first):
        """Folds every later row of FIRST's address and protocol into FIRST (ports merged)."""
        keys = self.keys
        f = first << 2
        keys[f + 2] = 0
        keys[f + 3] |= 1
        row = first + 1
        while row < self.count:
            if self._same_group(first, row):
                c = row * 3
                self._add(first, self.counts[c], self.counts[c + 1], self.counts[c + 2])
                self._remove(row)
                self._shared -= 1
            else:
                row += 1

    def _one_way(self):
        counts = self.counts
        for row in range(self.count):
            c = row * 3
            if counts[c + 1] == 0 or counts[c + 2] == 0:
                return row
        return -1

    def _to_rest(self, row):
        c = row * 3
        self._add(self.capacity, self.counts[c], self.counts[c + 1], self.counts[c + 2])
        self._remove(row)

    def _remove(self, row):
        keys = self.keys
        counts = self.counts
        last = self.count - 1
        for r in range(row, last):
            k = r << 2
            keys[k] = keys[k + 4]
            keys[k + 1] = keys[k + 5]
            keys[k + 2] = keys[k + 6]
            keys[k + 3] = keys[k + 7]
            c = r * 3
            counts[c] = counts[c + 3]
            counts[c + 1] = counts[c + 4]
            counts[c + 2] = counts[c + 5]
        self.count = last

    def rows(self, row):
        """Fills ROW with (remote address or None, remote port or None, protocol name or None,
        hits, bytes in, bytes out, scope) per row, then the rest row when it holds anything."""
        keys = self.keys
        counts = self.counts
        for r in range(self.count):
            k = r << 2
            c = r * 3
            merged = keys[k + 3] & 1
            # A protocol of 4 or more: an IPv6 address by its number, only ever in the host's
            # summary (host_sim.engine), which defines address_text.
            row[0] = (format_ipv4(keys[k], keys[k + 1]) if keys[k + 3] < 8
                      else self.address_text(keys[k], keys[k + 1]))
            row[1] = None if merged else keys[k + 2]
            row[2] = PROTOCOLS[(keys[k + 3] >> 1) & 3]
            row[3] = counts[c]
            row[4] = counts[c + 1]
            row[5] = counts[c + 2]
            row[6] = SCOPES[merged]
            yield row
        c = self.capacity * 3
        if counts[c] or counts[c + 1] or counts[c + 2]:
            row[0] = None
            row[1] = None
            row[2] = None
            row[3] = counts[c]
            row[4] = counts[c + 1]
            row[5] = counts[c + 2]
            row[6] = SCOPES[2]
            yield row

    def reset(self):
        self.count = 0
        self._shared = 0
        counts = self.counts
        c = self.capacity * 3
        counts[c] = 0
        counts[c + 1] = 0
        counts[c + 2] = 0

# The firmware engine's IPv6 paths (docs/spec.md section 4): IPv6 connections and AAAA answers go
# to the IPv6 cache and DNS table beside the IPv4 ones, as the RTOS module kept IPv6 in a pool of
# its own; an address that is IPv4-mapped on both ends is an IPv4 connection. A module of its own,
# loaded only by an engine built with an IPv6 cache. Nothing here allocates per event.
from array import array

from microagent import events
from microagent.cache import LOST


def _is_mapped(groups, at):
    return (groups[at + 5] == 0xFFFF and groups[at] == 0 and groups[at + 1] == 0
            and groups[at + 2] == 0 and groups[at + 3] == 0 and groups[at + 4] == 0)


def _mapped(groups, at):
    # The IPv4 halves at GROUPS[at], [at + 1] made the IPv4-mapped IPv6 groups at GROUPS[at..].
    groups[at + 6] = groups[at]
    groups[at + 7] = groups[at + 1]
    for i in range(5):
        groups[at + i] = 0
    groups[at + 5] = 0xFFFF


class IPv6Paths:
    """ENGINE's IPv6 entry points (its network6 and dns6 caches)."""

    def __init__(self, engine):
        self.engine = engine
        # Parsed addresses of one event: local groups at 0, remote at 8 (allocated once).
        self.groups = array("H", bytes(32))

    def record_text(self, offset_ms, protocol, local_address, local_port, remote_address,
                    remote_port, bytes_in, bytes_out, direction, hit):
        engine = self.engine
        groups = self.groups
        local = events.parse_address(local_address, groups, 0)
        remote = events.parse_address(remote_address, groups, 8)
        if not local or not remote:
            engine.record_unsupported_connection()
            return
        if local == 2 and remote == 2:
            engine.record_connection_packed(offset_ms, protocol, groups[0], groups[1],
                                            local_port, groups[8], groups[9], remote_port,
                                            bytes_in, bytes_out, direction, hit)
            return
        # One IPv4 end: kept IPv4-mapped in the IPv6 cache, reported as IPv4 text.
        if local == 2:
            _mapped(groups, 0)
        if remote == 2:
            _mapped(groups, 8)
        self._record(offset_ms, protocol, groups, 0, local_port, groups, 8, remote_port,
                     bytes_in, bytes_out, direction, hit)

    def record_packed(self, offset_ms, protocol, local, local_port, remote, remote_port,
                      bytes_in, bytes_out, direction, hit):
        if _is_mapped(local, 0) and _is_mapped(remote, 0):
            self.engine.record_connection_packed(offset_ms, protocol, local[6], local[7],
                                                 local_port, remote[6], remote[7], remote_port,
                                                 bytes_in, bytes_out, direction, hit)
            return
        self._record(offset_ms, protocol, local, 0, local_port, remote, 0, remote_port,
                     bytes_in, bytes_out, direction, hit)

    def _record(self, offset_ms, protocol, local, la, local_port, remote, ra, remote_port,
                bytes_in, bytes_out, direction, hit):
        engine = self.engine
        if engine.network6.record_packed(offset_ms, protocol, local, la, local_port, remote, ra,
                                         remote_port, bytes_in, bytes_out, direction,
                                         hit) == LOST:
            engine._lost(events.CONNECTION6)
            # The board's summary keeps IPv4 rows only (microagent.overflow.add_rest).
            engine.overflow.add_rest(hit, bytes_in, bytes_out)

    def record_dns(self, host_name, address):
        groups = self.groups
        n = events.parse_address(address, groups, 0)
        if n == 8:
            self.record_dns_packed(host_name, groups)
        elif n == 2:
            self.engine.record_dns_packed(host_name, groups[0], groups[1])

    def record_dns_packed(self, host_name, groups):
        engine = self.engine
        if _is_mapped(groups, 0):
            engine.record_dns_packed(host_name, groups[6], groups[7])
        elif engine.dns6.record_packed(events.cap_string(host_name), groups) == LOST:
            engine._lost(events.DNS)

    def lookup(self, address):
        """The DNS join of a reported (canonical) remote ADDRESS, in the table of its family."""
        engine = self.engine
        if ":" in address:
            return engine.dns6.lookup(address)
        return engine.dns.lookup(address)

    def rows(self, row):
        """The IPv4 cache's rows, then the IPv6 cache's: each oldest first."""
        engine = self.engine
        for r in engine.network.rows(row):
            yield r
        for r in engine.network6.rows(row):
            yield r

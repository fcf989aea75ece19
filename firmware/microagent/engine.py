# The aggregation engine: records events into the per-collector caches of the current window and
# flushes a window into messages. The cache classes are the overflow policy: the firmware passes
# the drop-new caches of microagent.cache, the host agent its evict-oldest ones.
from microagent import events
from microagent.cache import LOST
from microagent.events import cap_string, application_protocol

_CAPPED = events.MAX_STRING_BYTES // 4


class Engine:
    """One window at a time. Callers give each event its offset in ms from the window start
    (a small int on every port) and call flush(window_start_ms, event_time_ms) when it closes.

    Every event goes in through a record_* method, from replay, the host's collectors and the
    board's socket tracker alike: that is where strings are capped, addresses made canonical
    (docs/spec.md section 3) and a full cache is reported (once per window per collector).

    NETWORK6 and DNS6 are the firmware's IPv6 cache and DNS table (RTOS semantics: a pool of its
    own); without them (the host) both families share NETWORK and DNS, keyed on canonical text.
    """

    # Class defaults, so that a board without IPv6 caches holds no more attributes than before.
    network6 = None
    dns6 = None
    _v6 = None
    # Address text -> canonical text or None; the host sets a memoised one.
    canonical = staticmethod(events.canonical_address)

    def __init__(self, process, network, login, dns, encoder, warn, network6=None, dns6=None):
        self.process = process
        self.network = network
        self.login = login
        self.dns = dns
        if network6 is not None:
            self.network6 = network6
            self.dns6 = dns6
            # A module of its own: a board without IPv6 caches never loads its code.
            from microagent.engine6 import IPv6Paths
            self._v6 = IPv6Paths(self)
        self.encoder = encoder
        self.warn = warn
        self.unsupported = 0
        # What the network cache lost this window, so a flood cannot hide an attack's
        # connections (docs/spec.md section 4); allocated once, like the caches. Imported here,
        # after the callers have allocated the caches: their arrays need contiguous room.
        from microagent.overflow import ConnectionOverflow
        self.overflow = ConnectionOverflow()
        self._warned = set()
        self._row = [None] * 13
        self._values = [None] * 13
        self.sent = 0  # messages the last flush or periodic send produced

    def _lost(self, collector):
        if collector not in self._warned:
            self._warned.add(collector)
            cache = self.cache_of(collector)
            self.warn("%s cache full (%d entries): %s this window; raise %s"
                      % (collector, cache.capacity,
                         "evicting oldest entries" if cache.evicted else "dropping new entries",
                         events.cache_size_key(collector)))

    def cache_of(self, collector):
        """The cache holding COLLECTOR's entries (a DroppedEvents collector name)."""
        if collector == events.CONNECTION6:
            return self.network6
        return {events.PROCESS: self.process, events.CONNECTION: self.network,
                events.LOGIN: self.login, events.DNS: self.dns}[collector]

    def record_process(self, offset_ms, commandline, uid, pid, ppid, type_code, executable,
                       user_name):
        if len(commandline) > _CAPPED:
            commandline = cap_string(commandline)
        if self.process.record(offset_ms, commandline, uid, pid, ppid, type_code,
                               cap_string(executable), cap_string(user_name)) == LOST:
            self._lost(events.PROCESS)

    def record_connection(self, offset_ms, protocol, local_address, local_port, remote_address,
                          remote_port, bytes_in, bytes_out, direction, hit=1):
        """Addresses are IPv4 or IPv6 text in any valid spelling (canonical dotted IPv4 is the
        hot path); one that is neither is counted as unsupported. HIT=0: more bytes of a
        connection already counted (once per window when first seen)."""
        if ":" in local_address or ":" in remote_address:  # IPv6 (inlined: the hot path)
            if self._v6 is not None:
                self._v6.record_text(offset_ms, protocol, local_address, local_port,
                                     remote_address, remote_port, bytes_in, bytes_out,
                                     direction, hit)
                return
            local_address = self.canonical(local_address)
            remote_address = self.canonical(remote_address)
            if (local_address is None or remote_address is None
                    or not (self.network.both_families
                            or (":" not in local_address and ":" not in remote_address))):
                # Neither family, or IPv6 on a board whose profile gives it no cache.
                self.record_unsupported_connection()
                return
        if self.network.record(offset_ms, protocol, local_address, local_port, remote_address,
                               remote_port, bytes_in, bytes_out, direction, hit) == LOST:
            self._lost(events.CONNECTION)
            lost = self.network.last_lost
            if lost is None:  # drop-new: the event itself was lost
                self.overflow.add_text(remote_address, remote_port, protocol, hit, bytes_in,
                                       bytes_out)
            else:  # evict-oldest: the evicted entry (a row laid out as NetworkCache.rows)
                self.overflow.add_text(lost[2], lost[4], lost[5], lost[8], lost[6], lost[7])

    def record_connection_packed(self, offset_ms, protocol, local_high, local_low, local_port,
                                 remote_high, remote_low, remote_port, bytes_in, bytes_out,
                                 direction, hit=1):
        """record_connection with IPv4 addresses as 16-bit halves (the board's socket tracker:
        no strings on its hot path)."""
        if self.network.record_packed(offset_ms, protocol, local_high, local_low, local_port,
                                      remote_high, remote_low, remote_port, bytes_in, bytes_out,
                                      direction, hit) == LOST:
            self._lost(events.CONNECTION)
            self.overflow.add(remote_high, remote_low, remote_port, protocol, hit, bytes_in,
                              bytes_out)

    def record_connection_packed6(self, offset_ms, protocol, local_groups, local_port,
                                  remote_groups, remote_port, bytes_in, bytes_out, direction,
                                  hit=1):
        """record_connection with IPv6 addresses as eight 16-bit groups each (sequences the
        caller owns; the board's socket tracker). IPv4-mapped groups on both ends are IPv4."""
        if self._v6 is None:  # a board whose profile gives IPv6 no cache
            self.record_unsupported_connection()
            return
        self._v6.record_packed(offset_ms, protocol, local_groups, local_port, remote_groups,
                               remote_port, bytes_in, bytes_out, direction, hit)

    def record_unsupported_connection(self):
        """A connection event this engine cannot keep (an address of neither family, or IPv6
        on a board without an IPv6 cache): counted in DroppedEvents."""
        self.unsupported += 1
        if self.unsupported == 1:
            self.warn("connection events without an IPv4 address and no IPv6 cache (or no "
                      "address); counting them as unsupported; raise "
                      "NetworkActivity_IPv6_CacheSize")

    def record_dns(self, host_name, address):
        """ADDRESS: an A or AAAA answer, in any valid spelling."""
        if ":" in address:
            if self._v6 is not None:
                self._v6.record_dns(host_name, address)
                return
            address = self.canonical(address)
            if address is None or (":" in address and not self.network.both_families):
                return
        if self.dns.record(cap_string(host_name), address) == LOST:
            self._lost(events.DNS)

    def record_dns_packed(self, host_name, high, low):
        """record_dns with the IPv4 address as 16-bit halves (the board's getaddrinfo)."""
        if self.dns.record_packed(cap_string(host_name), high, low) == LOST:
            self._lost(events.DNS)

    def record_dns_packed6(self, host_name, groups):
        """record_dns with an IPv6 address as eight 16-bit groups (the board's getaddrinfo)."""
        if self._v6 is not None:
            self._v6.record_dns_packed(host_name, groups)

    def record_login(self, offset_ms, operation, pid, user_name, executable, remote_address):
        if remote_address is not None and ":" in remote_address:
            # Canonical, or as sent when it is no address (a log's host name).
            remote_address = self.canonical(remote_address) or remote_address
        if self.login.record(offset_ms, operation, pid, cap_string(user_name),
                             cap_string(executable), remote_address) == LOST:
            self._lost(events.LOGIN)

    def flush(self, window_start_ms, event_time_ms, collectors=None):
        """Encodes the window into messages, empties the caches; returns messages sent.
        COLLECTORS (DroppedEvents collector names) limits it to those caches, for an agent whose
        collectors have windows of different lengths (the host); None: every cache."""
        for _ in self.flush_steps(window_start_ms, event_time_ms, collectors):
            pass
        return self.sent

    def flush_steps(self, window_start_ms, event_time_ms, collectors=None):
        """flush() one item at a time: a generator that yields before each item (and before the
        last message closes), when at most one message has been handed to the encoder's sink
        since the last yield. The board awaits between steps, so a window's flush never holds
        the application's loop and can wait for room in the outbox. The count is then in .sent.
        """
        enc = self.encoder
        enc.begin(event_time_ms, window_start_ms)
        row = self._row
        values = self._values
        if self.process.count and (collectors is None or events.PROCESS in collectors):
            enc.event(events.PROCESS, "Triggered", "Security")
            for r in self.process.rows(row):
                values[0] = r[0]
                values[1] = r[1]
                values[2] = r[2]
                values[3] = r[3]
                values[4] = r[4]
                values[5] = events.PROCESS_TYPES[r[5]]
                values[6] = r[6]
                values[7] = r[7]
                values[8] = r[8]
                yield
                enc.item(events.PROCESS_FIELDS, values)
        v6 = self._v6
        if ((self.network.count or (v6 is not None and self.network6.count))
                and (collectors is None or events.CONNECTION in collectors)):
            enc.event(events.CONNECTION, "Triggered", "Security")
            for r in (self.network.rows(row) if v6 is None else v6.rows(row)):
                dns_hits, host_name = (self.dns.lookup(r[2]) if v6 is None
                                       else v6.lookup(r[2]))
                values[0] = r[0]
                values[1] = r[1]
                values[2] = r[2]
                values[3] = r[3]
                values[4] = r[4]
                values[5] = events.PROTOCOLS[r[5]]
                values[6] = application_protocol(r[3], r[4], r[9])
                values[7] = r[6]
                values[8] = r[7]
                values[9] = r[8]
                values[10] = dns_hits
                values[11] = {"host_name": host_name} if host_name is not None else {}
                values[12] = events.DIRECTIONS[r[9]]
                yield
                enc.item(events.CONNECTION_FIELDS, values)
        if self.login.count and (collectors is None or events.LOGIN in collectors):
            enc.event(events.LOGIN, "Triggered", "Security")
            for r in self.login.rows(row):
                values[0] = r[0]
                values[1] = events.LOGIN_OPERATIONS[r[1]]
                values[2] = r[2]
                values[3] = r[3]
                values[4] = r[4]
                values[5] = r[5]
                yield
                enc.item(events.LOGIN_FIELDS, values)
        for _ in self._flush_losses(collectors):
            yield
        if collectors is None or events.CONNECTION in collectors:
            for _ in self._flush_overflow():
                yield
        yield
        self.sent = enc.finish()
        if collectors is None:
            for cache in (self.process, self.network, self.login, self.dns):
                cache.reset()
            self._reset_ipv6()
            self.unsupported = 0
            self.overflow.reset()
            self._warned = set()
            return
        for collector in collectors:
            self.cache_of(collector).reset()
            self._warned.discard(collector)
        if events.CONNECTION in collectors:
            self._reset_ipv6()
            self._warned.discard(events.CONNECTION6)
            self.unsupported = 0
            self.overflow.reset()

    def _reset_ipv6(self):
        if self._v6 is not None:
            self.network6.reset()
            self.dns6.reset()

    def send_periodic(self, name, items, event_time_ms):
        """Encodes a trigger-based collector's payload ITEMS (dicts: SystemInformation, Baseline,
        SBoM) as one Periodic event, split over messages like any window; returns messages sent.
        """
        for _ in self.periodic_steps(name, items, event_time_ms):
            pass
        return self.sent

    def periodic_steps(self, name, items, event_time_ms):
        """send_periodic() one item at a time, as flush_steps(); the count is then in .sent."""
        self.sent = 0
        if not items:
            return
        enc = self.encoder
        enc.begin(event_time_ms)
        enc.event(name, "Periodic", "Security")
        for item in items:
            fields = sorted(item)
            yield
            enc.item(fields, [item[f] for f in fields])
        yield
        self.sent = enc.finish()

    def _flush_overflow(self):
        # One ConnectionOverflow event after DroppedEvents, only in a window that lost
        # connections: at most ROWS + 1 items.
        overflow = self.overflow
        if not overflow.lost:
            return
        self.encoder.event(events.OVERFLOW, "Periodic", "Operational")
        values = self._values
        values[0] = 0  # the window start
        for r in overflow.rows(self._row):
            values[1] = r[0]
            values[2] = r[1]
            values[3] = r[2]
            values[4] = r[3]
            values[5] = r[4]
            values[6] = r[5]
            values[7] = r[6]
            yield
            self.encoder.item(events.OVERFLOW_FIELDS, values)

    def _flush_losses(self, collectors):
        started = False
        values = self._values
        for collector in (events.PROCESS, events.CONNECTION, events.CONNECTION6, events.LOGIN,
                          events.DNS):
            if collector == events.CONNECTION6:
                if self.network6 is None:
                    continue
                listed = events.CONNECTION  # the IPv6 cache flushes with the IPv4 one
            else:
                listed = collector
            if collectors is not None and listed not in collectors:
                continue
            cache = self.cache_of(collector)
            unsupported = self.unsupported if collector == events.CONNECTION else 0
            dropped = cache.dropped
            if collector == events.DNS and self.dns6 is not None:
                dropped += self.dns6.dropped  # one DNS row for both tables
            if not (dropped or cache.evicted or unsupported):
                continue
            if not started:
                self.encoder.event("DroppedEvents", "Periodic", "Operational")
                started = True
            values[0] = 0  # the window start
            values[1] = collector
            values[2] = cache.capacity
            values[3] = dropped
            values[4] = cache.evicted
            values[5] = unsupported if unsupported else None
            yield
            self.encoder.item(events.DROPPED_FIELDS, values)


def make_encoder(encoding, agent_id, sink, max_size=4096, utc_offset_minutes=0):
    """The encoder for ENCODING ("json" or "compact"). Chosen here, not in microagent.encode:
    microagent.compact builds on that module, which therefore never imports it."""
    from microagent.encode import COMPACT, JSON, MessageEncoder  # here: no names kept on a board
    if encoding == COMPACT:
        # Imported only when chosen: a board speaking JSON keeps the compact code off its heap.
        from microagent.compact import CompactEncoder
        return CompactEncoder(agent_id, sink, max_size, utc_offset_minutes)
    if encoding == JSON:
        return MessageEncoder(agent_id, sink, max_size, utc_offset_minutes)
    raise ValueError("unknown encoding " + str(encoding))


def build_engine(process_cache, network_cache, login_cache, max_message_size, agent_id, sink,
                 warn, encoding, network6_cache=None):
    """The firmware's engine as replay runs it (replay_main, `microagent replay --engine firmware`,
    the crosscheck): drop-new caches of these sizes (the IPv6 one NETWORK_CACHE's unless
    NETWORK6_CACHE), each DNS table bounded by its network cache's size (docs/spec.md
    section 3)."""
    from microagent.cache import DnsTable, LoginCache, NetworkCache, ProcessCache  # never on a board
    from microagent.cache6 import DnsTable6, NetworkCache6
    if network6_cache is None:
        network6_cache = network_cache
    encoder = make_encoder(encoding, agent_id, sink, max_message_size)
    return Engine(ProcessCache(process_cache), NetworkCache(network_cache),
                  LoginCache(login_cache), DnsTable(network_cache), encoder, warn,
                  NetworkCache6(network6_cache), DnsTable6(network6_cache))


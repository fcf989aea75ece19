"""A plain model of docs/spec.md sections 1-5: what each window of a trace must produce.

It is the oracle of `microagent crosscheck` and the property tests, so it stands apart from the
code it checks: it imports nothing of the project, only the standard library, and follows the
spec's wording rather than the engines' data structures (an ordered dict per cache, strings for
addresses, datetime for timestamps). Written for clarity, not speed.
"""
import ipaddress
import json
from collections import OrderedDict
from datetime import datetime, timezone

FIRMWARE = "firmware"
HOST = "host"
PROCESS = "ProcessCreate"
CONNECTION = "ConnectionCreate"
CONNECTION6 = "ConnectionCreateIPv6"
LOGIN = "Login"
DNS = "DNS"
OVERFLOW = "ConnectionOverflow"
COLLECTORS = (PROCESS, CONNECTION, LOGIN, DNS)
# docs/spec.md section 4: the overflow summary lists at most this many destinations.
OVERFLOW_ROWS = 16

# docs/spec.md section 1: strings are cut to 2,048 bytes of UTF-8, ending in this marker.
_MAX_BYTES = 2048
_MARKER = "...[truncated]"

# docs/spec.md section 3: the service port names the application protocol.
_SERVICES = {20: "FTP", 21: "FTP", 22: "SSH", 23: "TELNET", 25: "SMTP", 53: "DNS", 67: "DHCP",
             68: "DHCP", 80: "HTTP", 110: "POP3", 123: "NTP", 143: "IMAP", 161: "SNMP",
             389: "LDAP", 443: "HTTPS", 445: "SMB", 502: "MODBUS", 587: "SMTP", 636: "LDAPS",
             993: "IMAPS", 1883: "MQTT", 3389: "RDP", 5671: "AMQP", 5672: "AMQP", 5683: "COAP",
             8080: "HTTP", 8443: "HTTPS", 8883: "MQTT", 20000: "DNP3", 47808: "BACNET"}

# The firmware keeps byte counts in 32-bit unsigned counters that saturate.
_FIRMWARE_COUNTER_MAX = 2 ** 32 - 1


def cut(text):
    """TEXT as the spec says a recorded string looks."""
    if text is None:
        return None
    raw = text.encode("utf-8")
    if len(raw) <= _MAX_BYTES:
        return text
    return raw[:_MAX_BYTES - len(_MARKER)].decode("utf-8", "ignore") + _MARKER


def canonical(address):
    """docs/spec.md section 3: RFC 5952 text, an IPv4-mapped address as its IPv4 one, the zone
    dropped; None when ADDRESS is neither family (ipaddress is this model's own parser)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if parsed.version == 4:
        return str(parsed)
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Address(int(parsed)))


def is_ipv6(address):
    """ADDRESS (canonical) is an IPv6 one."""
    return ":" in address


def timestamp(ms):
    """ISO 8601 UTC with milliseconds, as payload items carry it."""
    moment = datetime.fromtimestamp(ms // 1000, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (ms % 1000)


def to_ms(seconds):
    return int(seconds * 1000 + 0.5)


class Cache:
    """One collector's cache under one policy, over one window."""

    def __init__(self, capacity, policy):
        self.capacity = capacity
        self.policy = policy
        self.entries = OrderedDict()
        self.dropped = 0
        self.evicted = 0
        self._serial = 0

    def add(self, key, event, merge):
        """Records EVENT; returns what the cache lost doing so: the event itself (firmware,
        full), the evicted entry (host, full), or None."""
        if key is None:  # logins: every event its own entry
            self._serial += 1
            key = self._serial
        if key in self.entries:
            merge(self.entries[key], event)
            return None
        lost = None
        if len(self.entries) >= self.capacity:
            if self.policy == FIRMWARE:
                self.dropped += 1
                return dict(event, hits=0 if event.get("continued") else 1)
            lost = self.entries.popitem(last=False)[1]
            self.evicted += 1
        self.entries[key] = dict(event, hits=1)
        return lost


class OverflowSummary:
    """docs/spec.md section 4, "The overflow summary", as written: rows in order, each a dict,
    and the rest row."""

    def __init__(self, capacity=OVERFLOW_ROWS):
        self.capacity = capacity
        self.rows = []
        self.rest = {"hits": 0, "bytes_in": 0, "bytes_out": 0}

    @staticmethod
    def _add(row, lost):
        for field in ("hits", "bytes_in", "bytes_out"):
            row[field] = min(row[field] + lost[field], _FIRMWARE_COUNTER_MAX)

    def _merge(self, address, protocol):
        group = [r for r in self.rows if (r["address"], r["protocol"]) == (address, protocol)]
        first = group[0]
        first["port"] = None
        for other in group[1:]:
            self._add(first, other)
            self.rows.remove(other)
        return first

    def add_rest(self, lost):
        self._add(self.rest, lost)

    def add(self, lost):
        """LOST: {address, port, protocol, hits, bytes_in, bytes_out}."""
        address, port, protocol = lost["address"], lost["port"], lost["protocol"]
        group = [r for r in self.rows if (r["address"], r["protocol"]) == (address, protocol)]
        for row in group:
            if row["port"] is None or row["port"] == port:
                self._add(row, lost)
                return
        if len(self.rows) == self.capacity:
            if group:
                self._add(self._merge(address, protocol), lost)
                return
            sizes = {}
            for row in self.rows:
                sizes[(row["address"], row["protocol"])] = sizes.get(
                    (row["address"], row["protocol"]), 0) + 1
            largest = max(sizes.values())
            if largest > 1:
                self._merge(*next(k for k, n in sizes.items() if n == largest))
            else:
                one_way = [r for r in self.rows if not (r["bytes_in"] and r["bytes_out"])]
                if not one_way:
                    self._add(self.rest, lost)
                    return
                self._add(self.rest, one_way[0])
                self.rows.remove(one_way[0])
        row = {"address": address, "port": port, "protocol": protocol, "hits": 0,
               "bytes_in": 0, "bytes_out": 0}
        self._add(row, lost)
        self.rows.append(row)

    def items(self, stamp):
        out = []
        for row in self.rows:
            item = {"timestamp": stamp, "remote_address": row["address"],
                    "transport_protocol": row["protocol"], "hit_count": row["hits"],
                    "bytes_in": row["bytes_in"], "bytes_out": row["bytes_out"],
                    "scope": "destination" if row["port"] is not None else "address"}
            if row["port"] is not None:
                item["remote_port"] = row["port"]
            out.append(item)
        rest = self.rest
        if rest["hits"] or rest["bytes_in"] or rest["bytes_out"]:
            out.append({"timestamp": stamp, "hit_count": rest["hits"],
                        "bytes_in": rest["bytes_in"], "bytes_out": rest["bytes_out"],
                        "scope": "rest"})
        return out


def _merge_hit(entry, event):
    entry["hits"] += 0 if event.get("continued") else 1
    entry["bytes_in"] = entry.get("bytes_in", 0) + event.get("bytes_in", 0)
    entry["bytes_out"] = entry.get("bytes_out", 0) + event.get("bytes_out", 0)


def _merge_dns(entry, event):
    entry["hits"] += 1
    entry["hostname"] = event["hostname"]


def expected_window(window_events, window_start, sizes, policy):
    """The items per collector (and the ConnectionOverflow summary's) and the loss counts a
    window of [(t ms, event)] must produce."""
    caches = {c: Cache(sizes[c], policy) for c in COLLECTORS}
    # docs/spec.md section 4: the firmware keeps IPv6 connections, and their DNS answers, in a
    # cache and a table of their own, each of the IPv6 cache's size; the host has one of each.
    if policy == FIRMWARE:
        size6 = sizes.get(CONNECTION6, sizes[CONNECTION])
        caches[CONNECTION6] = Cache(size6, policy)
        dns6 = Cache(size6, policy)
    else:
        caches[CONNECTION6] = caches[CONNECTION]
        dns6 = caches[DNS]
    overflow = OverflowSummary()
    for t, e in window_events:
        e = dict(e, offset=t - window_start)
        kind = e["kind"]
        if kind == "process":
            e["commandline"] = cut(e["commandline"])
            caches[PROCESS].add((e["commandline"], e["uid"]), e, _merge_hit)
        elif kind == "connection":
            e["local_address"] = canonical(e["local_address"])
            e["remote_address"] = canonical(e["remote_address"])
            family = (CONNECTION6 if is_ipv6(e["local_address"]) or is_ipv6(e["remote_address"])
                      else CONNECTION)
            lost = caches[family].add((e["local_port"], e["remote_port"], e["protocol"],
                                       e["local_address"], e["remote_address"]), e, _merge_hit)
            if lost is not None:
                lost = {"address": lost["remote_address"], "port": lost["remote_port"],
                        "protocol": lost["protocol"], "hits": lost["hits"],
                        "bytes_in": lost.get("bytes_in", 0),
                        "bytes_out": lost.get("bytes_out", 0)}
                if policy == FIRMWARE and family == CONNECTION6:
                    overflow.add_rest(lost)  # the board's summary rows are IPv4 only
                else:
                    overflow.add(lost)
        elif kind == "dns":
            e["address"] = canonical(e["address"])
            (dns6 if is_ipv6(e["address"]) else caches[DNS]).add(e["address"], e, _merge_dns)
        else:
            if e.get("remote_address") is not None:
                e["remote_address"] = canonical(e["remote_address"])
            caches[LOGIN].add(None, e, _merge_hit)
    dns = dict(caches[DNS].entries)
    dns.update(dns6.entries)
    if policy == FIRMWARE:
        def counter(n):
            return min(n, _FIRMWARE_COUNTER_MAX)
    else:
        def counter(n):
            return n
    items = {PROCESS: [], CONNECTION: [], LOGIN: [],
             OVERFLOW: overflow.items(timestamp(window_start))}
    for e in caches[PROCESS].entries.values():
        item = {"timestamp": timestamp(window_start + e["offset"]), "process_id": e["pid"],
                "parent_process_id": e["ppid"], "user_id": e["uid"],
                "commandline": e["commandline"], "type": e["type"], "hit_count": e["hits"]}
        for optional in ("executable", "user_name"):
            if e.get(optional) is not None:
                item[optional] = cut(e[optional])
        items[PROCESS].append(item)
    connections = list(caches[CONNECTION].entries.values())
    if policy == FIRMWARE:  # IPv4 entries first, then IPv6 ones
        connections += list(caches[CONNECTION6].entries.values())
    for e in connections:
        direction = e.get("direction")
        service_port = e["local_port"] if direction == "in" else e["remote_port"]
        resolved = dns.get(e["remote_address"])
        item = {"timestamp": timestamp(window_start + e["offset"]),
                "local_address": e["local_address"], "remote_address": e["remote_address"],
                "local_port": e["local_port"], "remote_port": e["remote_port"],
                "transport_protocol": e["protocol"],
                "application_protocol": _SERVICES.get(service_port, "UNKNOWN"),
                "bytes_in": counter(e.get("bytes_in", 0)),
                "bytes_out": counter(e.get("bytes_out", 0)),
                "hit_count": e["hits"], "dns_hit_count": resolved["hits"] if resolved else 0,
                "extended_properties": {"host_name": resolved["hostname"]} if resolved else {}}
        if direction:
            item["direction"] = direction
        items[CONNECTION].append(item)
    for e in caches[LOGIN].entries.values():
        item = {"timestamp": timestamp(window_start + e["offset"]), "operation": e["operation"],
                "process_id": e["pid"], "user_name": cut(e["user_name"]),
                "executable": cut(e["executable"])}
        if e.get("remote_address") is not None:
            item["remote_address"] = e["remote_address"]
        items[LOGIN].append(item)
    losses = {}
    for c in COLLECTORS + ((CONNECTION6,) if policy == FIRMWARE else ()):
        dropped = caches[c].dropped
        if c == DNS and policy == FIRMWARE:
            dropped += dns6.dropped  # one DNS row for both tables
        # Every address a trace may hold is IPv4 or IPv6: nothing is unsupported any more.
        if dropped or caches[c].evicted:
            losses[c] = {"dropped": dropped, "evicted": caches[c].evicted, "unsupported": 0}
    return items, losses


def trace_windows(path, window_ms):
    """{window index: (window start ms, [(t ms, event)])} of a well-formed trace (docs/spec.md section 2).

    The engines have already refused a bad trace with its line named; this reader only reads.
    """
    windows = OrderedDict()
    t0 = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            event = json.loads(line)
            t = to_ms(event["t"])
            if t0 is None:
                t0 = t
            index = (t - t0) // window_ms
            windows.setdefault(index, (t0 + index * window_ms, []))[1].append((t, event))
    return windows

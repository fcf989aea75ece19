# The event model shared by both engines: kinds, codes, payload field order, string capping and
# address parsing (IPv4 and IPv6). MicroPython-compatible; nothing here allocates per event
# except cap_string on an over-long string and the canonical text of an IPv6 address.

MAX_STRING_BYTES = 2048
TRUNCATION_MARKER = "...[truncated]"

PROTOCOLS = ("TCP", "UDP", "ICMP")
PROCESS_TYPES = ("fork", "exec")
LOGIN_OPERATIONS = ("Login", "Logout", "LoginFailed")
# Direction codes: 0 when the event did not say.
DIRECTIONS = (None, "in", "out")

# Collector names as they appear in DroppedEvents.
PROCESS = "ProcessCreate"
CONNECTION = "ConnectionCreate"
# The firmware's IPv6 network cache, beside the IPv4 one (the host has one cache for both).
CONNECTION6 = "ConnectionCreateIPv6"
LOGIN = "Login"
DNS = "DNS"
# The operational event summarising what the network cache lost (microagent.overflow).
OVERFLOW = "ConnectionOverflow"

# Payload field order per event name (docs/spec.md section 5); a None value omits an optional field.
PROCESS_FIELDS = ("timestamp", "process_id", "parent_process_id", "user_id", "commandline",
                  "type", "hit_count", "executable", "user_name")
CONNECTION_FIELDS = ("timestamp", "local_address", "remote_address", "local_port", "remote_port",
                     "transport_protocol", "application_protocol", "bytes_in", "bytes_out",
                     "hit_count", "dns_hit_count", "extended_properties", "direction")
LOGIN_FIELDS = ("timestamp", "operation", "process_id", "user_name", "executable", "remote_address")
DROPPED_FIELDS = ("timestamp", "collector", "cache_size", "dropped", "evicted", "unsupported")
OVERFLOW_FIELDS = ("timestamp", "remote_address", "remote_port", "transport_protocol", "hit_count",
                   "bytes_in", "bytes_out", "scope")

# Service port -> application protocol (remote port for outbound, local port for inbound), as one
# string constant rather than a dict: it costs the heap no table.
_SERVICES = (" 20:FTP 21:FTP 22:SSH 23:TELNET 25:SMTP 53:DNS 67:DHCP 68:DHCP 80:HTTP 110:POP3"
             " 123:NTP 143:IMAP 161:SNMP 389:LDAP 443:HTTPS 445:SMB 502:MODBUS 587:SMTP"
             " 636:LDAPS 993:IMAPS 1883:MQTT 3389:RDP 5671:AMQP 5672:AMQP 5683:COAP 8080:HTTP"
             " 8443:HTTPS 8883:MQTT 20000:DNP3 47808:BACNET ")


def application_protocol(local_port, remote_port, direction):
    port = local_port if direction == 1 else remote_port
    at = _SERVICES.find(" %d:" % port)
    if at < 0:
        return "UNKNOWN"
    start = _SERVICES.index(":", at) + 1
    return _SERVICES[start:_SERVICES.index(" ", start)]


def cache_size_key(collector):
    """The config key that sizes COLLECTOR's cache (named in overflow warnings)."""
    if collector == PROCESS:
        return "Process_CacheSize"
    if collector == LOGIN:
        return "Login_CacheSize"
    if collector == CONNECTION6:
        return "NetworkActivity_IPv6_CacheSize"
    return "NetworkActivity_CacheSize"


def cap_string(text):
    """TEXT cut to MAX_STRING_BYTES of UTF-8, ending with TRUNCATION_MARKER when cut."""
    # Four bytes per character at most: short strings need no encoding (no allocation).
    if text is None or len(text) * 4 <= MAX_STRING_BYTES:
        return text
    raw = text.encode()
    if len(raw) <= MAX_STRING_BYTES:
        return text
    cut = MAX_STRING_BYTES - len(TRUNCATION_MARKER)
    # Back up to the start of a UTF-8 sequence so the cut never splits a character.
    while cut > 0 and (raw[cut] & 0xC0) == 0x80:
        cut -= 1
    return raw[:cut].decode() + TRUNCATION_MARKER


def parse_ipv4(text, halves, at):
    """Parses dotted IPv4 TEXT into two 16-bit halves stored at HALVES[at], HALVES[at + 1].

    Halves, not one 32-bit int, because small ints are 31-bit on 32-bit boards.
    Returns True, or False when TEXT is not a dotted IPv4 address. Allocates nothing.
    """
    octet = 0
    digits = 0
    dots = 0
    high = 0
    for c in text:
        if c == ".":
            if digits == 0 or octet > 255 or dots == 3:
                return False
            if dots == 0:
                high = octet << 8
            elif dots == 1:
                high |= octet
            else:
                halves[at + 1] = octet << 8
            dots += 1
            octet = 0
            digits = 0
        elif "0" <= c <= "9" and digits < 3 and not (digits == 1 and octet == 0):
            # No leading zeros: one spelling per address, so string keys equal packed keys.
            octet = octet * 10 + ord(c) - 48
            digits += 1
        else:
            return False
    if dots != 3 or digits == 0 or octet > 255:
        return False
    halves[at] = high
    halves[at + 1] |= octet
    return True


def format_ipv4(high, low):
    return "%d.%d.%d.%d" % (high >> 8, high & 0xFF, low >> 8, low & 0xFF)


def parse_address(text, halves, at):
    """Parses an IPv4 or IPv6 address TEXT in any valid spelling (upper case, uncompressed,
    leading zeros in groups, an embedded IPv4 tail, a zone suffix, which is dropped).

    Returns 2 with IPv4's two 16-bit halves at HALVES[at], HALVES[at + 1] (an IPv4-mapped IPv6
    address too), 8 with IPv6's eight 16-bit groups at HALVES[at..at + 7], or 0 when TEXT is
    neither. HALVES needs room for 8 from AT. Allocates nothing.
    """
    if ":" not in text:
        return 2 if parse_ipv4(text, halves, at) else 0
    return _ipv6().parse_text(text, halves, at)


def format_address(halves, at, n):
    """The canonical text of the address parse_address wrote (N = 2 or 8): dotted IPv4, or IPv6
    in RFC 5952 (lower case, no leading zeros, the first longest run of two or more zero groups
    as "::"); IPv4-mapped groups give the dotted IPv4."""
    return (format_ipv4(halves[at], halves[at + 1]) if n == 2
            else _ipv6().format_groups(halves, at))


def canonical_address(text):
    """The canonical text of IPv4 or IPv6 address TEXT (format_address), or None when TEXT is
    neither. Canonical dotted IPv4 is returned as it is (no allocation)."""
    halves = [0] * 8
    n = parse_address(text, halves, 0)
    if n == 2 and ":" not in text:
        return text
    return format_address(halves, 0, n) if n else None


_ipv6_module = None


def _ipv6():
    # The IPv6 text code is a module of its own, loaded on the first IPv6 address: a board that
    # never sees one keeps its heap.
    global _ipv6_module
    if _ipv6_module is None:
        from microagent import ipv6
        _ipv6_module = ipv6
    return _ipv6_module

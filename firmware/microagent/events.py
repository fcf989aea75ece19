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


def is_ipv6(text):
    return ":" in text


def _hex_digit(c):
    if "0" <= c <= "9":
        return ord(c) - 48
    if "a" <= c <= "f":
        return ord(c) - 87
    if "A" <= c <= "F":
        return ord(c) - 55
    return -1


def _parse_ipv6(text, halves, at):
    # One pass over TEXT, no slicing (allocation): groups go to HALVES[at..at + 7] as they come,
    # then the ones after "::" move to the end. STATE: 0 start, 1 after a hex digit, 2 after ":",
    # 3 after "::", 4 after a leading ":", 5 in the embedded IPv4 tail, 6 in the zone.
    n = 0
    gap = -1
    state = 0
    value = 0
    digits = 0
    decimal = 0  # the group read as a decimal octet, -1 when it cannot be one
    octet = 0
    dots = 0
    high = 0
    zone = 0
    for c in text:
        if state == 6:
            if c == "%":
                return 0
            zone += 1
        elif c == "%":
            if state == 5:
                if digits == 0 or octet > 255:
                    return 0
            elif state == 1:
                if n == 8:
                    return 0
                halves[at + n] = value
                n += 1
            elif state != 3:
                return 0
            state = 6
        elif state == 5:
            if c == ".":
                if digits == 0 or octet > 255 or dots == 3:
                    return 0
                if dots == 1:
                    high |= octet
                else:
                    halves[at + n + 1] = octet << 8
                dots += 1
                octet = 0
                digits = 0
            elif "0" <= c <= "9" and digits < 3 and not (digits == 1 and octet == 0):
                octet = octet * 10 + ord(c) - 48
                digits += 1
            else:
                return 0
        elif c == ":":
            if state == 1:
                if n == 8:
                    return 0
                halves[at + n] = value
                n += 1
                state = 2
            elif state == 0:
                state = 4
            elif state == 2 or state == 4:
                if gap >= 0:
                    return 0
                gap = n
                state = 3
            else:
                return 0
            value = 0
            digits = 0
            decimal = 0
        elif c == ".":
            # The group read so far was the IPv4 tail's first octet.
            if state != 1 or decimal < 0 or decimal > 255 or n > 6:
                return 0
            high = decimal << 8
            dots = 1
            octet = 0
            digits = 0
            state = 5
        else:
            d = _hex_digit(c)
            if d < 0 or digits == 4 or state == 4:
                return 0
            value = (value << 4) | d
            if d > 9 or decimal < 0 or (digits == 1 and decimal == 0):
                decimal = -1
            else:
                decimal = decimal * 10 + d
            digits += 1
            state = 1
    if state == 6:
        if zone == 0:
            return 0
    elif state == 5:
        if digits == 0 or octet > 255:
            return 0
    elif state == 1:
        if n == 8:
            return 0
        halves[at + n] = value
        n += 1
    elif state != 3:
        return 0
    if dots:
        if dots != 3:
            return 0
        halves[at + n] = high
        halves[at + n + 1] |= octet
        n += 2
    if gap < 0:
        if n != 8:
            return 0
    else:
        if n > 7:
            return 0
        # The groups after "::" move to the end; zeros fill the gap.
        shift = 8 - n
        i = n - 1
        while i >= gap:
            halves[at + i + shift] = halves[at + i]
            i -= 1
        for i in range(gap, gap + shift):
            halves[at + i] = 0
    if (halves[at] == 0 and halves[at + 1] == 0 and halves[at + 2] == 0 and halves[at + 3] == 0
            and halves[at + 4] == 0 and halves[at + 5] == 0xFFFF):
        # IPv4-mapped: reported as the IPv4 address it carries.
        halves[at] = halves[at + 6]
        halves[at + 1] = halves[at + 7]
        return 2
    return 8


def parse_address(text, halves, at):
    """Parses an IPv4 or IPv6 address TEXT in any valid spelling (upper case, uncompressed,
    leading zeros in groups, an embedded IPv4 tail, a zone suffix, which is dropped).

    Returns 2 with IPv4's two 16-bit halves at HALVES[at], HALVES[at + 1] (an IPv4-mapped IPv6
    address too), 8 with IPv6's eight 16-bit groups at HALVES[at..at + 7], or 0 when TEXT is
    neither. HALVES needs room for 8 from AT. Allocates nothing.
    """
    if ":" not in text:
        return 2 if parse_ipv4(text, halves, at) else 0
    return _parse_ipv6(text, halves, at)


def format_address(halves, at, n):
    """The canonical text of the address parse_address wrote (N = 2 or 8): dotted IPv4, or IPv6
    in RFC 5952 (lower case, no leading zeros, the first longest run of two or more zero groups
    as "::"); IPv4-mapped groups give the dotted IPv4."""
    if n == 2:
        return format_ipv4(halves[at], halves[at + 1])
    if (halves[at] == 0 and halves[at + 1] == 0 and halves[at + 2] == 0 and halves[at + 3] == 0
            and halves[at + 4] == 0 and halves[at + 5] == 0xFFFF):
        return format_ipv4(halves[at + 6], halves[at + 7])
    best = -1
    best_length = 1
    i = 0
    while i < 8:
        if halves[at + i] == 0:
            j = i + 1
            while j < 8 and halves[at + j] == 0:
                j += 1
            if j - i > best_length:
                best = i
                best_length = j - i
            i = j
        else:
            i += 1
    if best < 0:
        return ":".join(["%x" % halves[at + i] for i in range(8)])
    return (":".join(["%x" % halves[at + i] for i in range(best)]) + "::"
            + ":".join(["%x" % halves[at + i] for i in range(best + best_length, 8)]))


def canonical_address(text):
    """The canonical text of IPv4 or IPv6 address TEXT (format_address), or None when TEXT is
    neither. Canonical dotted IPv4 is returned as it is (no allocation)."""
    if ":" not in text:
        halves = [0, 0]
        return text if parse_ipv4(text, halves, 0) else None
    halves = [0, 0, 0, 0, 0, 0, 0, 0]
    n = _parse_ipv6(text, halves, 0)
    return format_address(halves, 0, n) if n else None

"""IP addresses as the collectors report them: canonical text (docs/spec.md), so one address
read from the kernel, a DNS answer, utmp or a log line is always the same string.

IPv4 is dotted decimal; IPv6 is RFC 5952 text (lower case, the longest run of two or more zero
groups as `::`, the first on a tie); an IPv4-mapped address (`::ffff:a.b.c.d`, a dual-stack
socket's IPv4 peer) is its IPv4 address; a zone (`fe80::1%eth0`) is dropped, as it is not part of
the address on the wire.
"""
import ipaddress


def _text(address):
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else str(address)


def canonical(text):
    """TEXT (an IPv4 or IPv6 address in any valid spelling) in canonical form, or None."""
    address, sign, zone = text.partition("%")
    if sign and (":" not in address or not zone or "%" in zone):
        return None                  # only IPv6 has zones, and a zone sign needs a zone
    try:
        return _text(ipaddress.ip_address(address))
    except ValueError:
        return None


def from_bytes(raw):
    """The canonical text of a 4-byte IPv4 or 16-byte IPv6 address in network byte order."""
    return _text(ipaddress.ip_address(bytes(raw)))

"""Addresses a device reports (hostile text), IPv4 or IPv6: one canonical spelling (RFC 5952 for
IPv6, an IPv4-mapped IPv6 address as its IPv4 one, a zone index dropped), where an address lies
(loopback, link-local, private, public...), and which network of a list holds it."""
import ipaddress

MAX_ADDRESS_TEXT = 64       # the longest IPv6 spelling is 45 characters, a zone name 15 more

# (network, scope): the first that holds an address names its scope; else "public"
_SCOPES = [(ipaddress.ip_network(n), scope) for n, scope in (
    ("0.0.0.0/8", "unspecified"), ("127.0.0.0/8", "loopback"), ("169.254.0.0/16", "link-local"),
    ("10.0.0.0/8", "private"), ("172.16.0.0/12", "private"), ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "private"), ("224.0.0.0/4", "multicast"), ("255.255.255.255/32", "broadcast"),
    ("::/128", "unspecified"), ("::1/128", "loopback"), ("fe80::/10", "link-local"),
    ("fc00::/7", "private"), ("ff00::/8", "multicast"))]
SCOPE_CACHE = 8192
_scopes = {}
# bytes to these never leave the device or its link
LOCAL_SCOPES = frozenset(("unspecified", "loopback", "link-local", "multicast", "broadcast"))


def _ip(text):
    """The ipaddress object of TEXT (IPv4-mapped IPv6 as IPv4, zone dropped), else None."""
    if type(text) is not str or len(text) > MAX_ADDRESS_TEXT:
        return None
    address, percent, zone = text.partition("%")
    if percent and not zone:
        return None             # a zone sign with no zone: not an address (as the agent reads it)
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def canonical(text):
    """The canonical text of the address TEXT (any valid spelling of either family), else None:
    '2001:DB8:0:0::1' -> '2001:db8::1', '::ffff:192.0.2.1' -> '192.0.2.1', 'fe80::1%eth0' ->
    'fe80::1'."""
    ip = _ip(text)
    return None if ip is None else str(ip)


def scope(text):
    """Where the address TEXT lies: 'loopback', 'link-local', 'private' (RFC 1918, CGNAT, IPv6
    ULA fc00::/7), 'multicast', 'broadcast', 'unspecified' or 'public'; None if not an
    address. Remembered per text (a bounded cache): rules ask it per connection."""
    try:
        return _scopes[text]
    except (KeyError, TypeError):
        pass
    ip = _ip(text)
    found = None
    if ip is not None:
        found = "public"
        for net, name in _SCOPES:
            if ip.version == net.version and ip in net:
                found = name
                break
    if type(text) is str and len(text) <= MAX_ADDRESS_TEXT:
        if len(_scopes) >= SCOPE_CACHE:
            _scopes.clear()
        _scopes[text] = found
    return found


def network(text):
    """The ip_network of a list entry TEXT (address or CIDR, either family; an IPv4-mapped IPv6
    network as its IPv4 network, so it matches the IPv4 addresses it stands for). ValueError."""
    net = ipaddress.ip_network(text.split("%", 1)[0] if "/" not in text else text, strict=False)
    mapped = ipaddress.ip_network("::ffff:0:0/96")
    if net.version == 6 and net.prefixlen >= 96 and net.subnet_of(mapped):
        net = ipaddress.ip_network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
    return net


def network_of(address, networks):
    """The first of NETWORKS (ip_network objects) holding ADDRESS, else None (also when
    ADDRESS is not an address)."""
    ip = _ip(address)
    if ip is None:
        return None
    for net in networks:
        if ip.version == net.version and ip in net:
            return net
    return None


def endpoint(address, port):
    """ADDRESS:PORT as people write it: an IPv6 address in brackets ([2001:db8::1]:443), so its
    colons are not read as the port's."""
    if type(address) is str and ":" in address:
        return "[%s]:%s" % (address, port)
    return "%s:%s" % (address, port)

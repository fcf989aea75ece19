"""Matching a device-reported address (hostile text) against networks: IPv4 or IPv6, an
IPv4-mapped IPv6 address as its IPv4 one, a zone index ignored."""
import ipaddress


def network_of(address, networks):
    """The first of NETWORKS (ip_network objects) holding ADDRESS, else None (also when
    ADDRESS is not an address)."""
    try:
        ip = ipaddress.ip_address(str(address).split("%")[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for network in networks:
        if ip.version == network.version and ip in network:
            return network
    return None

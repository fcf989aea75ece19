"""A free TCP port on 127.0.0.1 for a program that must be told its port before it starts
(mosquitto, QEMU, an application on the virtual board), where binding port 0 cannot be used.

It is picked below the kernel's ephemeral range: the outgoing connections of other programs on a
busy machine take their ports from that range, so none can take ours between this check and the
program's own bind.
"""
import random
import socket

LOWEST = 10000


def ephemeral_range():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = f.read().split()
    return int(low), int(high)


def free_port(attempts=200):
    below = ephemeral_range()[0]
    lowest = LOWEST if below > LOWEST + 1000 else 1024
    for _ in range(attempts):
        port = random.randrange(lowest, below)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1 between %d and %d" % (lowest, below - 1))

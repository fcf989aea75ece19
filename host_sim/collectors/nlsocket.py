"""Draining a non-blocking netlink socket, as the process connector and audit sources do."""
import errno


def datagrams(sock, buffer, stats):
    """Yields the length of each datagram waiting on SOCK, received into BUFFER (read it before
    asking for the next), until none is left. ENOBUFS means the kernel dropped messages because
    the receive buffer overflowed: it is counted in stats["overruns"] and reading goes on."""
    while True:
        try:
            n = sock.recv_into(buffer)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            stats["overruns"] += 1
            continue
        yield n

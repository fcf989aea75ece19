"""A private network namespace for a test: its own loopback, so what other programs on this machine
do on 127.0.0.1 neither shows in what a live collector sees nor takes a port a test binds.

    with private_network():
        ...sockets, threads and processes made here live in the new namespace...

The calling thread moves into a new namespace with `lo` up, and back when the block ends. Sockets
keep the namespace they were made in; threads and processes started inside inherit it, so a
server and its clients started inside see each other and nothing else. Needs root
(CAP_SYS_ADMIN). The kernel's process connector exists only in the initial namespace: open a
ProcessCollector outside the block.
"""
import contextlib
import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _check(name, result):
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, "%s(CLONE_NEWNET): %s" % (name, os.strerror(code)))


@contextlib.contextmanager
def private_network():
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        _check("unshare", _libc.unshare(CLONE_NEWNET))
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, capture_output=True)
            yield
        finally:
            _check("setns", _libc.setns(original, CLONE_NEWNET))
    finally:
        os.close(original)

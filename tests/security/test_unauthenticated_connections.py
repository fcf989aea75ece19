"""Half-open TLS connections (a ClientHello, then silence) cost the hub bounded memory: it
holds at most MAX_PENDING of them, closing the oldest for each new one, a valid device still
connects meanwhile, and the memory goes back once they are gone. (`make bench` reports the
figures for 1,000 of them.)"""
import resource

import pytest

from hub_emulator import loadgen, server

HALF_OPEN = 300


@pytest.fixture(autouse=True)
def enough_file_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 4 * HALF_OPEN))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def wait_for(predicate, timeout_s, what):
    import time
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("not within %ds: %s" % (timeout_s, what))
        time.sleep(0.1)


def test_half_open_connections_are_capped_and_a_device_still_connects(hub):
    pid = hub.proc.pid
    loadgen.login(hub, "dev1")  # the first TLS session warms up what every later one shares
    before = loadgen.rss_kib(pid)
    held = loadgen.HalfOpen(hub.port)
    try:
        peak = [before]
        held.open(HALF_OPEN, 25, lambda n: peak.append(loadgen.rss_kib(pid)))
        seconds, tries = loadgen.timed_login(hub, "dev1")
        assert tries <= 3
        # The oldest were closed to admit the newer: all but at most MAX_PENDING.
        wait_for(lambda: held.closed_by_server() >= HALF_OPEN - server.MAX_PENDING, 30,
                 "the hub closes the oldest half-open connections")
        # About half a megabyte each, for at most MAX_PENDING of them (300 unbounded: 150 MB).
        assert max(peak) - before < server.MAX_PENDING * 1024, (before, peak)
    finally:
        held.close()
    # Once they are gone the memory goes back to the system (glibc keeps some: within 16 MB).
    wait_for(lambda: loadgen.rss_kib(pid) - before < 16 * 1024, 30,
             "RSS back near %d KiB (now %d KiB)" % (before, loadgen.rss_kib(pid)))
    assert "Traceback" not in hub.log()


def test_a_connection_that_never_sends_connect_is_closed_after_the_deadline(hub):
    held = loadgen.HalfOpen(hub.port)
    try:
        held.open(1)
        wait_for(lambda: held.closed_by_server() == 1, server.CONNECT_DEADLINE + 20,
                 "the hub closes a silent connection after %d s" % server.CONNECT_DEADLINE)
    finally:
        held.close()
    assert "no CONNECT within %d s" % server.CONNECT_DEADLINE in hub.log()

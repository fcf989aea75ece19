"""The hub emulator under 1,000 half-open TLS connections (a ClientHello, then silence): its
RSS before, during and after them, and how long a valid device waits to connect meanwhile.
Baseline, measured in the same run: the idle hub's RSS and a login with no load.
Run: `.venv/bin/python -m bench.half_open_bench [N]`."""
import resource
import sys
import tempfile
import time

from bench.report import progress, table
from hub_emulator import loadgen, server
from hub_emulator.process import HubProcess

SETTLE_S = 10  # longest wait for the RSS to come down once the connections are closed


def _settled_rss(pid, target_kib):
    deadline = time.monotonic() + SETTLE_S
    rss = loadgen.rss_kib(pid)
    while rss > target_kib and time.monotonic() < deadline:
        time.sleep(0.2)
        rss = loadgen.rss_kib(pid)
    return rss


def run(count=1000):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 512)), hard))
    with tempfile.TemporaryDirectory() as workdir:
        hub = HubProcess(workdir + "/hub", plain_port=None)
        hub.add_device("bench")
        with hub:
            pid = hub.proc.pid
            loadgen.login(hub, "bench")  # warms up what every TLS session shares
            before = loadgen.rss_kib(pid)
            base_s, base_tries = loadgen.timed_login(hub, "bench")
            progress("opening %d half-open TLS connections to the hub emulator" % count)
            held = loadgen.HalfOpen(hub.port)
            samples = []
            midway = []

            def sample(opened):
                samples.append(loadgen.rss_kib(pid))
                if opened == count // 2:  # a device arriving in the middle of the flood
                    midway.append(loadgen.timed_login(hub, "bench"))
            try:
                held.open(count, max(1, count // 20), sample)
                during = max(samples)
                held_s, held_tries = loadgen.timed_login(hub, "bench")
                held_rss = loadgen.rss_kib(pid)
                still_open = count - held.closed_by_server()
            finally:
                held.close()
            after = _settled_rss(pid, before + 8 * 1024)
    mid_s, mid_tries = midway[0]
    rows = [
        ["idle hub (baseline)", before / 1024.0, 1.0, base_s, 1.0, base_tries],
        ["peak while %d are opened" % count, during / 1024.0, during / float(before), mid_s,
         mid_s / base_s, mid_tries],
        ["all %d opened (%d not yet closed by the hub)" % (count, still_open),
         held_rss / 1024.0, held_rss / float(before), held_s, held_s / base_s, held_tries],
        ["after they closed", after / 1024.0, after / float(before), "-", "-", "-"],
    ]
    table("Hub emulator under %d half-open TLS connections (cap %d unauthenticated, %d s "
          "deadline); baseline: the idle hub, same run" % (count, server.MAX_PENDING,
                                                          server.CONNECT_DEADLINE),
          ["phase", "RSS MiB", "RSS ×idle", "valid login s", "login ×idle", "tries"], rows)
    return rows


if __name__ == "__main__":
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)

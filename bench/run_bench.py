"""RSS of `microagent run` (the host agent with every collector) over time on this machine:
the baseline is its RSS after the first 10 seconds; the ratio shows any growth."""
import os
import subprocess
import sys
import time

from bench.report import progress, table

MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")
DURATION_S = float(os.environ.get("BENCH_RUN_SECONDS", "600"))


def _rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run():
    progress("running `microagent run` for %.0f s (BENCH_RUN_SECONDS)" % DURATION_S)
    proc = subprocess.Popen([MICROAGENT, "run", "--output", os.devnull, "--window", "60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = []
    start = time.monotonic()
    try:
        for mark in (10, 60, DURATION_S / 2, DURATION_S):
            time.sleep(max(0.0, start + mark - time.monotonic()))
            if proc.poll() is not None:
                raise RuntimeError("microagent run exited with %s" % proc.returncode)
            samples.append((mark, _rss_kib(proc.pid), _cpu_s(proc.pid)))
    finally:
        proc.terminate()
        proc.wait(10)
    base = samples[0][1]
    table("RSS of `microagent run` (all collectors, windows of 60 s) on this machine",
          ["after (s)", "RSS MiB", "CPU s", "RSS ×(after 10 s)"],
          [[int(t), rss / 1024.0, cpu, rss / float(base)] for t, rss, cpu in samples])
    return samples

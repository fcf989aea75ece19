"""Log lines from several threads (collectors, the MQTT transport, the main loop) stay whole:
scripts and tests read them line by line (`microagent: collecting: ...`)."""
import re
import subprocess
import sys

SCRIPT = """
import threading
from host_sim.cli import log_line

def chatter(n):
    for i in range(3000):
        log_line("microagent: thread %d line %d" % (n, i))

threads = [threading.Thread(target=chatter, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""


def test_concurrent_log_lines_never_interleave():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 8 * 3000
    broken = [line for line in lines if not re.fullmatch(r"microagent: thread \d line \d+", line)]
    assert broken == []

"""Runs every benchmark: `make bench` (or `python -m bench`). Each prints its tables; set
BENCH_JSON=FILE to also get every row as a JSON line. A benchmark that fails is named in one
line and the others still run; the exit status is then 1."""
import sys

from bench import (agent_bench, alerts_bench, collectors_bench, compact_bench, delivery_bench,
                   detections_bench, dps_bench, firmware_bench, flash_bench, flood_bench, half_open_bench,
                   heap32, host_bench, hub_emulator, kafka_bench, loop_latency, run_bench,
                   store_bench, targets_bench, transport_heap, validation_bench)
from bench.report import progress

BENCHES = (
    ("firmware_bench", firmware_bench.run),
    ("host_bench", host_bench.run),
    ("transport_heap", transport_heap.run),
    ("hub_emulator", lambda: hub_emulator.run(2000)),
    ("half_open_bench", lambda: half_open_bench.run(1000)),
    ("delivery_bench", delivery_bench.run),
    ("compact_bench", compact_bench.run),
    ("collectors_bench", collectors_bench.run),
    ("flash_bench", flash_bench.run),
    ("agent_bench", agent_bench.run),
    ("heap32", heap32.run),
    ("dps_bench", dps_bench.run),
    ("flood_bench", flood_bench.run),
    ("loop_latency", loop_latency.run),
    ("alerts_bench", alerts_bench.run),
    ("detections_bench", detections_bench.run),
    ("validation_bench", validation_bench.run),
    ("store_bench", store_bench.run),
    ("kafka_bench", kafka_bench.run),
    ("run_bench", run_bench.run),
    ("targets_bench", targets_bench.run),
)


def main():
    failed = []
    for name, run in BENCHES:
        try:
            run()
        except Exception as exc:  # one broken bench must not hide the others' figures
            failed.append(name)
            progress("bench %s failed: %s" % (name, " ".join(str(exc).split())[-300:]))
    if failed:
        progress("benches that failed: %s" % ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

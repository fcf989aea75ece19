"""Runs every benchmark: `make bench` (or `python -m bench`). Each prints its tables; set
BENCH_JSON=FILE to also get every row as a JSON line."""
from bench import (agent_bench, alerts_bench, collectors_bench, compact_bench, delivery_bench,
                   firmware_bench, flash_bench, half_open_bench, heap32, host_bench, hub_emulator,
                   loop_latency, run_bench, targets_bench, transport_heap)

if __name__ == "__main__":
    firmware_bench.run()
    host_bench.run()
    transport_heap.run()
    hub_emulator.run(2000)
    half_open_bench.run(1000)
    delivery_bench.run()
    compact_bench.run()
    collectors_bench.run()
    flash_bench.run()
    agent_bench.run()
    heap32.run()
    loop_latency.run()
    alerts_bench.run()
    run_bench.run()
    targets_bench.run()

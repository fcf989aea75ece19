"""Runs every benchmark: `make bench` (or `python -m bench`). Each prints its tables; set
BENCH_JSON=FILE to also get every row as a JSON line."""
from bench import (agent_bench, collectors_bench, delivery_bench, firmware_bench, flash_bench,
                   heap32, host_bench, hub_emulator, loop_latency, run_bench, transport_heap)

if __name__ == "__main__":
    firmware_bench.run()
    host_bench.run()
    transport_heap.run()
    hub_emulator.run(2000)
    delivery_bench.run()
    collectors_bench.run()
    flash_bench.run()
    agent_bench.run()
    heap32.run()
    loop_latency.run()
    run_bench.run()

"""Runs every benchmark: `make bench` (or `python -m bench`)."""
from bench import delivery_bench, firmware_bench, host_bench, hub_emulator, transport_heap

if __name__ == "__main__":
    firmware_bench.run()
    host_bench.run()
    hub_emulator.run(2000)
    transport_heap.run()
    delivery_bench.run()

"""Heap behaviour of the firmware engine on the real MicroPython unix port."""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def test_network_cache_of_256_and_engine_fit_in_66k_and_hits_allocate_nothing(micropython):
    # 64 KB before IPv6: the address API (microagent.events) and the engine's IPv6 entry points
    # cost about 1.8 KB of code here, loaded from .mpy (nothing when frozen into the firmware).
    proc = micropython(os.path.join(HERE, "heap_probe.py"), ["256"], heap="66K", source=False)
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["full"] == 256
    assert figures["dropped"] == 0
    # 10,000 hits on each of four paths: the packed and string connection paths, process, DNS
    assert figures["hit_alloc_delta"] == 0, figures
    # slot 5 (port 1029) was hit once per 128 iterations, on top of its first record
    assert figures["hits"] == 1 + 10000 // 128 + 1


def test_the_heap_cap_is_real(micropython):
    proc = micropython(os.path.join(HERE, "heap_probe.py"), ["256"], heap="40K", source=False,
                       check=False)
    assert proc.returncode != 0
    assert "MemoryError" in proc.stdout + proc.stderr

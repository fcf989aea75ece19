"""Mixed-family traces (IPv4, IPv6 and IPv4-mapped addresses in random spellings, A and AAAA
answers, IPv6 logins) through both engines on every runtime, against the reference model
(host_sim.reference_model, which reads addresses with ipaddress), row for row: ConnectionCreate
with the DNS join, Login, the overflow summary and DroppedEvents per window."""
import json

import pytest

from host_sim import crosscheck as cc
from host_sim import targets, tracegen

RUNTIMES = ("cpython", "micropython", "micropython32", "qemu-cortex-m3")


@pytest.fixture(scope="module")
def mixed_trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("mixed") / "mixed.jsonl"
    tracegen.write(tracegen.random_trace(20, events=900, distinct=60, ipv6=0.5), path)
    return str(path)


def _heap(runtime):
    return str(targets.heap_of_image(runtime)) if runtime == "qemu-cortex-m3" else "1M"


def test_the_mixed_trace_has_both_families_in_non_canonical_spellings(mixed_trace):
    with open(mixed_trace) as f:
        lines = [json.loads(line) for line in f]
    addresses = [e[k] for e in lines for k in ("local_address", "remote_address", "address")
                 if k in e]
    assert any(":" in a and a != a.lower() for a in addresses)  # upper case
    assert any(":0000:" in a or a.startswith("0000:") for a in addresses)  # leading zeros
    assert any(a.lower().startswith("::ffff:") for a in addresses)  # IPv4-mapped
    assert sum(1 for a in addresses if ":" not in a) > 100
    assert any(e["kind"] == "dns" and ":" in e["address"] for e in lines)
    assert any(e["kind"] == "login" and ":" in e["remote_address"] for e in lines)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("cache_size", [60, 7])
def test_both_engines_match_the_model_on_a_mixed_trace(firmware_targets, mixed_trace, runtime,
                                                        cache_size):
    # The compact encoder's flush needs more heap than the emulated board's image holds (IPv4
    # traces too, before IPv6 came in): JSON only there.
    for encoding in ("json",) if runtime == "qemu-cortex-m3" else ("json", "compact"):
        report = cc.crosscheck(mixed_trace, 600000, cache_size, heap=_heap(runtime),
                               runtime=runtime, encoding=encoding)
        assert report.ok, "\n".join(report.problems)
        if cache_size == 7:  # both families overflowed: the policies differ, as documented
            assert any(row[2] == "policy difference" for row in report.rows)
        else:
            assert any(row[1] == "ConnectionCreate" and row[2] == "identical"
                       for row in report.rows)


def test_a_firmware_engine_that_keys_on_spelling_is_caught(mixed_trace, monkeypatch):
    from microagent import engine6

    def as_spelled(self, offset_ms, protocol, local_address, local_port, remote_address,
                   remote_port, bytes_in, bytes_out, direction, hit):
        # Keys on the text as sent: every spelling becomes an entry of its own.
        groups = self.groups
        for i, c in enumerate((local_address + remote_address)[:16]):
            groups[i] = ord(c)
        self._record(offset_ms, protocol, groups, 0, local_port, groups, 8, remote_port,
                     bytes_in, bytes_out, direction, hit)
    monkeypatch.setattr(engine6.IPv6Paths, "record_text", as_spelled)
    report = cc.crosscheck(mixed_trace, 600000, 200, runtime="cpython")
    assert not report.ok
    assert any("firmware" in p for p in report.problems)


def test_a_host_engine_that_keys_on_spelling_is_caught(mixed_trace, monkeypatch):
    from microagent import events
    monkeypatch.setattr(events, "canonical_address", lambda text: text)
    report = cc.crosscheck(mixed_trace, 600000, 200, runtime="cpython")
    assert not report.ok
    assert any("host" in p for p in report.problems)

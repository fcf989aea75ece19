"""`microagent crosscheck`: passes on the bundled traces, fails loudly on a broken engine."""
import os
import subprocess
import sys

import pytest

from host_sim import crosscheck as cc
from host_sim import engine as host_engine

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRACES = os.path.join(REPO, "tests", "fixtures", "traces")
MICROAGENT = os.path.join(os.path.dirname(sys.executable), "microagent")


@pytest.mark.parametrize("trace,window", [("quiet-device", 600), ("busy-gateway", 300),
                                          ("cache-storm", 300)])
def test_bundled_traces_pass(trace, window):
    proc = subprocess.run([MICROAGENT, "crosscheck", os.path.join(TRACES, trace + ".jsonl"),
                           "--window", str(window)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "crosscheck passed" in proc.stdout
    if trace == "cache-storm":
        assert "policy difference" in proc.stdout
        assert "ConnectionCreate" in proc.stdout


def test_storm_reports_exact_counts():
    report = cc.crosscheck(os.path.join(TRACES, "cache-storm.jsonl"), 300000, 256)
    assert report.ok, report.problems
    storm = [r for r in report.rows if r[1] == "ConnectionCreate" and r[2] == "policy difference"]
    assert storm
    # the scan of 10,000 distinct flows overflows the 256-entry cache by thousands
    dropped = sum(int(row[3].split("dropped ")[1].split()[0]) for row in storm)
    assert dropped > 9000


def test_a_host_engine_that_forgets_to_evict_is_caught(monkeypatch, tmp_path):
    from host_sim import tracegen
    trace = tmp_path / "t.jsonl"
    tracegen.write(tracegen.random_trace(11, events=300, distinct=60), trace)

    def never_evict(self, key, entry):
        if len(self.entries) >= self.capacity:
            self.dropped += 1
            return 2
        self.entries[key] = entry
        return 0
    monkeypatch.setattr(host_engine._EvictingCache, "_insert", never_evict)
    report = cc.crosscheck(str(trace), 600000, 5, runtime="cpython")
    assert not report.ok
    assert any("host" in p for p in report.problems)


def test_a_firmware_engine_that_loses_bytes_is_caught(monkeypatch, tmp_path):
    from host_sim import tracegen
    from microagent import cache
    trace = tmp_path / "t.jsonl"
    tracegen.write(tracegen.random_trace(12, events=200, distinct=20), trace)
    monkeypatch.setattr(cache.NetworkCache, "_add", lambda self, slot, i, o, hit: None)
    report = cc.crosscheck(str(trace), 600000, 50, runtime="cpython")
    assert not report.ok
    assert any("firmware ConnectionCreate" in p for p in report.problems)
    assert any("got" in p and "expected" in p for p in report.problems)


def test_crosscheck_cli_exit_1_with_readable_diff(tmp_path):
    # a trace whose replay differs from the model would need a broken engine; the CLI's failure
    # path is exercised through a bad trace instead: a clear error and exit 2
    trace = tmp_path / "bad.jsonl"
    trace.write_text('{"kind":"dns","t":5,"hostname":"a","address":"1.1.1.1"}\n'
                     '{"kind":"dns","t":4,"hostname":"a","address":"1.1.1.1"}\n')
    proc = subprocess.run([MICROAGENT, "crosscheck", str(trace)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "bad.jsonl:2: out of time order" in proc.stderr


def test_reference_model_stands_apart_from_the_code_it_checks():
    """The crosscheck oracle imports only the standard library, never the engines' helpers."""
    import ast
    import sys

    from host_sim import reference_model

    tree = ast.parse(open(reference_model.__file__).read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or ".").split(".")[0])
    assert imported, "the model imports nothing? the parse found no import at all"
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)

"""The host engine's overflow summary (host_sim.engine.HostConnectionOverflow) finds rows by the
evicted entry's address text instead of parsing it; its rows must stay the spec's. On random
floods of lost connections (few addresses, ports and protocols, mostly two-way so the summary
settles and the rest row fills, with one-way runs that make rows leave from the middle, several
windows), its rows are the reference model's (host_sim.reference_model, written from
docs/spec.md) and the core summary's fed the same losses; and the rules really are skipped."""
import random

import pytest

from host_sim.engine import HostConnectionOverflow
from host_sim.reference_model import OverflowSummary
from microagent import overflow
from microagent.events import PROTOCOLS, format_ipv4
from microagent.overflow import ROWS, ConnectionOverflow

STAMP = "2026-01-01T00:00:00.000Z"


def _windows(seed):
    """Windows of lost connections: (address text, port, protocol, hits, bytes in, bytes out)."""
    rng = random.Random(seed)
    windows = []
    for _ in range(rng.randint(1, 3)):
        addresses = ["%d.%d.0.%d" % (rng.choice((10, 192, 203)), rng.randrange(256), n)
                     for n in range(rng.randint(2, 40))]
        ports = rng.randint(1, 20)
        one_way = rng.choice((0.0, 0.1, 0.5))
        lost = []
        for _ in range(rng.randint(1, 600)):
            if rng.random() < 0.05:  # a run of one-way losses: rows leave for the rest row
                run = [(rng.choice(addresses), rng.randrange(1, ports + 1), rng.randrange(2),
                        1, rng.randint(1, 900), 0) for _ in range(rng.randint(1, 20))]
                lost.extend(run)
                continue
            silent = rng.random() < one_way
            lost.append((rng.choice(addresses), rng.randrange(1, ports + 1), rng.randrange(2),
                         rng.randint(0, 1), rng.randint(1, 5000),
                         0 if silent else rng.randint(1, 900)))
        windows.append(lost)
    return windows


def _rows(summary):
    rows = []
    for r in summary.rows([None] * 7):
        item = {"timestamp": STAMP, "remote_address": r[0], "remote_port": r[1],
                "transport_protocol": r[2], "hit_count": r[3], "bytes_in": r[4],
                "bytes_out": r[5], "scope": r[6]}
        rows.append({k: v for k, v in item.items() if v is not None})
    return rows


@pytest.mark.parametrize("seed", range(200))
def test_the_host_summary_is_the_model_and_the_core(seed):
    host = HostConnectionOverflow()
    core = ConnectionOverflow()
    for lost in _windows(seed):
        model = OverflowSummary()
        for address, port, protocol, hits, bytes_in, bytes_out in lost:
            host.add_text(address, port, protocol, hits, bytes_in, bytes_out)
            core.add_text(address, port, protocol, hits, bytes_in, bytes_out)
            model.add({"address": address, "port": port, "protocol": PROTOCOLS[protocol],
                       "hits": hits, "bytes_in": bytes_in, "bytes_out": bytes_out})
        rows = _rows(host)
        assert rows == model.items(STAMP), seed
        assert rows == _rows(core), seed
        assert bool(host.lost) == bool(lost)
        host.reset()  # the window closes
        core.reset()
    assert not host.lost and _rows(host) == []


def test_a_settled_flood_folds_without_the_rules(monkeypatch):
    """Sixteen two-way rows, then 5,000 losses to them and to 500 other addresses: the core's
    rules (and its parsing of the address) run only to fill the rows; the rows are the model's."""
    calls = []
    core_add = overflow.ConnectionOverflow.add

    def counted_add(self, *args):
        calls.append(args)
        return core_add(self, *args)

    monkeypatch.setattr(overflow.ConnectionOverflow, "add", counted_add)
    host = HostConnectionOverflow()
    model = OverflowSummary()
    rng = random.Random(7)
    losses = [n for n in range(ROWS)] + [rng.randrange(ROWS + 500) for _ in range(5000)]
    for n in losses:
        address = format_ipv4(0x0A00, n)
        host.add_text(address, 443, 0, 1, 100, 10)
        model.add({"address": address, "port": 443, "protocol": PROTOCOLS[0], "hits": 1,
                   "bytes_in": 100, "bytes_out": 10})
    assert len(calls) == ROWS
    rows = _rows(host)
    assert rows == model.items(STAMP)
    assert rows[-1]["scope"] == "rest" and rows[-1]["hit_count"] == sum(n >= ROWS for n in losses)

"""The overflow summary's rules (docs/spec.md section 4) on random streams of lost connections
drawn from few addresses and ports, so every rule runs (merging one address's ports, merging the
address with the most rows, moving one-way rows to the rest, the rest itself): the engines'
summary (microagent.overflow) gives the reference model's rows; the totals are the stream's; and
the guarantee holds as the spec states it, checked against the stream alone."""
import random

import pytest

from host_sim.reference_model import OverflowSummary
from microagent.events import PROTOCOLS, format_ipv4
from microagent.overflow import ROWS, ConnectionOverflow

STAMP = "2026-01-01T00:00:00.000Z"


def _stream(seed):
    rng = random.Random(seed)
    addresses = rng.randint(2, 40)
    ports = rng.randint(1, 30)
    out = []
    for _ in range(rng.randint(1, 400)):
        both = rng.random() < rng.choice((0.0, 0.05, 0.3))
        out.append({"high": 0xC612, "low": rng.randrange(addresses),
                    "port": rng.randrange(1, ports + 1), "protocol": rng.randrange(2),
                    "hits": rng.randint(0, 1),
                    "bytes_in": rng.choice((0, 0, rng.randint(1, 5000))) if not both
                    else rng.randint(1, 5000),
                    "bytes_out": 0 if not both and rng.random() < 0.7 else rng.randint(1, 900)})
    return out


def _summaries(stream):
    engine = ConnectionOverflow()
    model = OverflowSummary()
    for lost in stream:
        engine.add(lost["high"], lost["low"], lost["port"], lost["protocol"], lost["hits"],
                   lost["bytes_in"], lost["bytes_out"])
        model.add({"address": format_ipv4(lost["high"], lost["low"]), "port": lost["port"],
                   "protocol": PROTOCOLS[lost["protocol"]], "hits": lost["hits"],
                   "bytes_in": lost["bytes_in"], "bytes_out": lost["bytes_out"]})
    rows = []
    for r in engine.rows([None] * 7):
        item = {"timestamp": STAMP, "remote_address": r[0], "remote_port": r[1],
                "transport_protocol": r[2], "hit_count": r[3], "bytes_in": r[4],
                "bytes_out": r[5], "scope": r[6]}
        rows.append({k: v for k, v in item.items() if v is not None})
    return rows, model.items(STAMP)


@pytest.mark.parametrize("seed", range(300))
def test_the_engines_summary_is_the_models(seed):
    rows, expected = _summaries(_stream(seed))
    assert rows == expected
    assert len(rows) <= ROWS + 1


@pytest.mark.parametrize("seed", range(300))
def test_totals_and_the_two_way_guarantee_hold_on_the_stream(seed):
    stream = _stream(seed)
    rows, _ = _summaries(stream)
    for field, column in (("hits", "hit_count"), ("bytes_in", "bytes_in"),
                          ("bytes_out", "bytes_out")):
        assert sum(r[column] for r in rows) == sum(lost[field] for lost in stream)
    # Pairs (address, protocol) whose lost traffic went both ways, from the stream alone.
    sums = {}
    for lost in stream:
        pair = (format_ipv4(lost["high"], lost["low"]), PROTOCOLS[lost["protocol"]])
        total = sums.setdefault(pair, [0, 0])
        total[0] += lost["bytes_in"]
        total[1] += lost["bytes_out"]
    two_way_pairs = [pair for pair, (bytes_in, bytes_out) in sums.items()
                     if bytes_in and bytes_out]
    if len(two_way_pairs) > ROWS:
        return
    listed = {(r.get("remote_address"), r.get("transport_protocol")) for r in rows}
    for lost in stream:
        if lost["bytes_in"] and lost["bytes_out"]:
            pair = (format_ipv4(lost["high"], lost["low"]), PROTOCOLS[lost["protocol"]])
            assert pair in listed, (seed, pair)


def test_the_streams_reach_every_rule():
    """The random streams above are not all easy: some merge ports, some move rows to the
    rest, some leave two-way traffic in the rest (more than 16 two-way addresses)."""
    scopes = set()
    two_way_rest = 0
    for seed in range(300):
        rows, _ = _summaries(_stream(seed))
        scopes.update(r["scope"] for r in rows)
        two_way_rest += any(r["scope"] == "rest" and r["bytes_in"] and r["bytes_out"]
                            for r in rows)
    assert scopes == {"destination", "address", "rest"}
    assert two_way_rest > 0

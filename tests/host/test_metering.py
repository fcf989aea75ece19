"""IoT Hub's meter, written once (host_sim/metering.py) and used by cost, the console and the
store: the figures of Microsoft's quotas page, and the Free tier metered in its own blocks."""
import json

from host_sim import metering
from host_sim.cloud.alerts.rules import load_rules
from host_sim.cloud.alerts.sources import StoredMessage
from host_sim.cloud.ingest import Ingest
from host_sim.cloud.store import open_store


def test_blocks_per_tier_as_microsoft_documents_them():
    # "0.5 KB for a free tier hub and 4 KB for all other tiers"
    assert metering.block_size("F1") == 512
    assert {metering.block_size(t) for t in ("B1", "S1", "B2", "S2", "B3", "S3")} == {4096}
    assert metering.blocks(0) == 1 and metering.blocks(4096) == 1 and metering.blocks(4097) == 2
    assert metering.blocks(1000, metering.FREE_BLOCK) == 2
    assert metering.daily_quota("F1") == 8000 and metering.daily_quota("S1", 3) == 1200000
    assert metering.daily_quota("S3") == 300000000


def test_the_store_counts_both_block_sizes(tmp_path):
    store = open_store(str(tmp_path / "cloud.db"))
    ingest = Ingest(store, load_rules())
    body = json.dumps({"AgentId": "a", "Events": [{"Name": "ProcessCreate", "Category":
                       "Triggered", "TimestampUTC": "2026-01-01T00:10:00.000Z",
                       "Payload": [{"commandline": "x" * 4500}]}]}).encode()
    ingest.feed("hub", 0, 1, StoredMessage(1, "dev", 1767226200.0, {}, body))
    ingest.commit()
    hours = store.hourly("dev")
    assert [(h[2], h[5]) for h in hours] == [(2, -(-len(body) // 512))]
    assert store.fleet_summary()["free_blocks"] == -(-len(body) // 512)
    ingest.close()

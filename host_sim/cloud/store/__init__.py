"""The cloud side's store: alerts, incidents, recommendations, what the rules learned per device,
per-device/hour aggregates and the positions read in each source, in SQLite (one file, the
default) or PostgreSQL (several consumers writing at once). See docs/cloud-store.md."""
from host_sim.cloud.store.dsn import redact
from host_sim.cloud.store.errors import StoreError
from host_sim.cloud.store.open import open_store

__all__ = ["StoreError", "open_store", "redact"]

"""Ingest, the customer-bucketed store, atomic publication."""

from bigseg.store.ingest import ingest, plan_inputs
from bigseg.store.store import Store, open_store

__all__ = ["Store", "ingest", "open_store", "plan_inputs"]

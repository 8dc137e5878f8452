"""Request records, payload blobs and the API catalog; backends chosen by URL."""

from __future__ import annotations

from cortex.store.base import ApiEntry, BlobStore, Catalog, RecordStore, Swept

__all__ = ["ApiEntry", "BlobStore", "Catalog", "RecordStore", "Swept"]

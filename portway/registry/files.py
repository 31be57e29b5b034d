"""The files registry: a directory of record files, the embedded default backend."""

from __future__ import annotations

from portway.registry.record_files import read_records

__all__ = ["read_records"]

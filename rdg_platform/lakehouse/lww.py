"""Exact last-write-wins compaction of graph records, per property (backfill and Spark rebuild).

The algorithm lives in :mod:`rdg_platform.model.lww` so the streaming dedup window applies the very
same rule (a namespace written through the stream then equals one rebuilt from history, values and
WRITETIMEs). This module re-exports it under its historical names.
"""

from __future__ import annotations

from rdg_platform.model.lww import Cell, KeyState, encode_value, lww_compact, lww_states, state_of

__all__ = ["Cell", "KeyState", "encode_value", "lww_compact", "lww_states", "state_of"]

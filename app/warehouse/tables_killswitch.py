"""Kill switches (filled in by the kill-switch work)."""

from __future__ import annotations

"""Log lines as runc writes them: see :mod:`ocipy.log` (kept for the CLI's imports)."""

from __future__ import annotations

from ocipy.log import debug, enabled, error, setup, warning

__all__ = ["debug", "enabled", "error", "setup", "warning"]

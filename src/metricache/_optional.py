"""Optional dependencies: imported on first use, with the exact ``pip install`` when missing."""

from __future__ import annotations

from .codecs._optional import require

__all__ = ["require"]

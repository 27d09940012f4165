"""Warnings that point at the user's line, and say so once."""

from __future__ import annotations

import os
import sys
import warnings

from ._log import logger
from .exceptions import CacheWriteWarning

__all__ = ["warn_write_failed", "warn_user"]

_PACKAGE = os.path.dirname(__file__) + os.sep


def warn_user(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the innermost caller outside metricache.

    A fixed ``stacklevel`` would name a metricache line whenever the call came
    through another route (``CM.<metric>()``, a nested metric, a recovery).
    """
    frame = sys._getframe(1)
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, category, stacklevel=level)


def warn_write_failed(name: str, err: OSError) -> None:
    """Report a failed cache write: a ``CacheWriteWarning``, and a log record if logging is set up.

    Without configured logging, logging's last-resort handler would print the same
    text to stderr that the warning already prints: once is enough.
    """
    message = f"could not store metric {name!r} ({err}); the value is kept in memory only"
    if logger.hasHandlers():
        logger.warning("%s", message)
    warn_user(message, CacheWriteWarning)

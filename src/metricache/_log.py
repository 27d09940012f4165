"""The ``metricache`` logger, and the seed's ``verbose=True`` reports through it."""

from __future__ import annotations

import logging
import sys

__all__ = ["logger", "report"]

logger = logging.getLogger("metricache")

# Used only while the application has configured no logging at all, so that
# verbose=True stays as visible as the seed's print() calls were.
_fallback = logging.StreamHandler(sys.stderr)
_fallback.setFormatter(logging.Formatter("metricache: %(message)s"))


def report(message: str, *args: object) -> None:
    """Log an action at INFO; print it to stderr when no logging is configured."""
    if logger.hasHandlers():
        logger.info(message, *args)
        return
    # Re-resolve the stream: tests and notebooks replace sys.stderr, and may close
    # the old one, which setStream() would flush (ValueError on a closed file).
    _fallback.stream = sys.stderr
    record = logger.makeRecord(logger.name, logging.INFO, "", 0, message, args, None)
    _fallback.handle(record)


def seconds(duration: float) -> str:
    """A human duration: ``'850 us'``, ``'12.3 ms'``, ``'4.56 s'``, ``'2 min 3 s'``."""
    if duration < 1e-3:
        return f"{duration * 1e6:.0f} us"
    if duration < 1:
        return f"{duration * 1e3:.1f} ms"
    if duration < 60:
        return f"{duration:.2f} s"
    minutes, rest = divmod(duration, 60)
    return f"{minutes:.0f} min {rest:.0f} s"

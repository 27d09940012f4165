"""The codec contract: how a Python value becomes bytes and back.

A codec never touches the file system itself: the store hands it an open binary
file object, so every codec works on every store (a local folder, a remote URL).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, BinaryIO, ClassVar

__all__ = ["Codec"]


class Codec(ABC):
    """Turn values into bytes written to a file object, and back.

    Subclasses set :attr:`name` and :attr:`suffix` and implement :meth:`write` and
    :meth:`read`; :meth:`validate` rejects unsupported values before anything is
    written.
    """

    #: Short registry name, e.g. ``"npz"``.
    name: ClassVar[str]
    #: File name suffix including the dot, e.g. ``".npz"``.
    suffix: ClassVar[str]
    #: True when :meth:`read` consumes its file front to back exactly once, so the
    #: storage can verify the checksum while the codec reads. A codec that seeks
    #: (a zip reader) sets this to False and is handed a seekable file: the real
    #: file (hashed meanwhile on another thread) or an in-memory copy.
    sequential: ClassVar[bool] = True

    def validate(self, value: Any) -> None:  # noqa: B027 - optional hook, no-op by default
        """Raise :class:`~metricache.UnsupportedValueError` if *value* cannot be stored."""

    @abstractmethod
    def write(self, value: Any, f: BinaryIO) -> str | None:
        """Write *value* to the binary file *f* (write-only, not seekable).

        Returns an optional short *hint* (e.g. the Python scalar type) that the
        storage keeps in the entry's metadata and passes back to :meth:`read`.
        """

    @abstractmethod
    def read(self, f: BinaryIO, hint: str | None = None) -> Any:
        """Read back a value from the binary file *f*, given the *hint* write returned."""

    def read_verified(self, f: BinaryIO, hint: str | None = None) -> Any:
        """Like :meth:`read`, for a file whose checksum the caller verifies itself.

        A codec may skip its own integrity checks here (zip member CRCs, say).
        """
        return self.read(f, hint)

    def memory_form(self, value: Any) -> Any:
        """*value* as :meth:`read` would return it after :meth:`write`, without encoding.

        The default returns *value* itself: right for a codec that is type-faithful.
        """
        return value

    def size_hint(self, value: Any) -> int | None:
        """The exact number of bytes :meth:`write` will produce, when cheap to know."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

"""The seed's ``FileBasedStorageInterface``: one file per metric, written by user hooks.

A subclass implements ``_save(filepath, data)`` and ``_load(filepath)``; this class
adds what metricache guarantees around them: validated names, atomic writes (the
hook writes a temp file next to the target, renamed over it), the seed's
``<name>_date`` sidecars, and per-name locks shared across processes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from typing import Any

from ._filestorage import FileStorageInterface
from ._interface import DATE_SUFFIX, StorageInterface
from ._locking import LocalLocks, LockProvider
from ._meta import EntryInfo, utc_now
from ._store import _HOST, TEMP_PREFIX, LocalStore

__all__ = ["FileBasedStorageInterface"]

# The old package's temp files (``<name>.tmp<ext>``), left by a crash: never entries.
_SEED_TEMP = ".tmp"


class FileBasedStorageInterface(StorageInterface):
    """Store each metric in ``<metrics_dir>/<name><file_ext>`` through two hooks.

    Subclass it and implement ``_save(filepath, data)`` (write *data* to exactly
    *filepath*) and ``_load(filepath)`` (return what that file holds), as with
    simple_metrics_manager. Every save is atomic: the hook writes a uniquely named
    temp file in the same folder whose name ends with *file_ext* (so ``np.save``
    appends nothing), renamed over the target only once the hook returned; a hook
    that raises leaves the previous value and no temp file. Each entry is dated with
    a ``<name>_date<file_ext>`` sidecar written through the same hook, as the old
    package did, so its folders open without recomputation.

    Unlike :class:`~metricache.NpzStorageInterface` and its siblings, entries carry
    no checksum or metadata record: what the hooks write is all there is.

    Parameters
    ----------
    file_ext : str
        Suffix of the data files, dot included (``".pkl"``).
    metrics_dir : str or os.PathLike
        The cache folder; created (with parents) when missing.

    Examples
    --------
    >>> import pickle, tempfile
    >>> from metricache import DataCacheManager, FileBasedStorageInterface
    >>> class PickleStorageInterface(FileBasedStorageInterface):
    ...     def __init__(self, metrics_dir):
    ...         super().__init__(".pkl", metrics_dir)
    ...     def _save(self, filepath, data):
    ...         with open(filepath, "wb") as f:
    ...             pickle.dump(data, f)
    ...     def _load(self, filepath):
    ...         with open(filepath, "rb") as f:
    ...             return pickle.load(f)
    >>> storage = PickleStorageInterface(tempfile.mkdtemp())
    >>> CM = DataCacheManager(storage, verbose=False)
    >>> CM.set_functions_dict({"answer": lambda: {"value": 42}})
    >>> CM["answer"]
    {'value': 42}
    >>> storage.stored_names()
    ['answer']
    """

    def __init__(self, file_ext: str, metrics_dir: str | os.PathLike[str]) -> None:
        if not isinstance(file_ext, str) or "/" in file_ext or os.sep in file_ext:
            raise ValueError(f"file_ext must be a file suffix such as '.pkl', not {file_ext!r}")
        _check_hooks(type(self))
        self.file_ext = file_ext
        self.metrics_dir = os.fspath(metrics_dir)
        # One provider per interface: every manager over it shares its thread locks.
        # Opening changes nothing: the folder is made by the first save, and litter
        # of dead writers goes in cleanup().
        self._locks = LocalLocks(self.metrics_dir)
        self._store = LocalStore(self.metrics_dir)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.metrics_dir!r})"

    # -- the hooks a subclass implements --

    def _save(self, filepath: str, data: Any) -> None:
        """Write *data* to the file *filepath* (implemented by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _save()")

    def _load(self, filepath: str) -> Any:
        """Return the value the file *filepath* holds (implemented by subclasses)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _load()")

    # -- the seed's API --

    def _get_filepath(self, name: str) -> str:
        """The data file of metric *name* (the seed's helper); the name is validated."""
        self.check_name(name)
        return self._path(name)

    def exists(self, name: str) -> bool:
        return os.path.exists(self._get_filepath(name))

    def save(self, name: str, data: Any) -> None:
        target = self._get_filepath(name)
        # The folder may have been removed since (a user clearing the cache by hand).
        os.makedirs(self.metrics_dir, exist_ok=True)
        tmp = self._temp_path()
        try:
            self._save(tmp, data)
            _replace(tmp, target, type(self).__name__)
        except BaseException:
            # Even KeyboardInterrupt: the old value stays, and no temp file is left.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def load(self, name: str) -> Any:
        return self._load(self._get_filepath(name))

    # -- the richer API the managers use --

    def write_entry(self, name: str, value: Any, duration: float | None = None) -> EntryInfo:
        if self._sidecar_is_free(name):
            return super().write_entry(name, value, duration)
        # A metric of its own lives where the sidecar would go: store undated, not over it.
        self.save(name, value)
        return EntryInfo(name, utc_now(), duration, storage=type(self).__name__)

    def info(self, name: str) -> EntryInfo | None:
        return super().info(name) if self._sidecar_is_free(name) else None

    def delete(self, name: str) -> bool:
        self.check_name(name)
        existed = self._store.delete(name + self.file_ext)
        if self._sidecar_is_free(name):
            self._store.delete(name + DATE_SUFFIX + self.file_ext)
        return existed

    def stored_names(self) -> list[str]:
        ext = self.file_ext
        names = {
            entry[: len(entry) - len(ext)]
            for entry in self._store.list()
            if entry.endswith(ext) and not entry.startswith(".")
        }
        names = {n for n in names if not n.endswith(_SEED_TEMP)}
        return sorted(n for n in names if not _is_sidecar(n, names))

    def lock_provider(self) -> LockProvider:
        return self._locks

    def cleanup(self) -> int:
        """Remove the temp files of writers that died mid-save; return how many."""
        removed = 0
        for key, dead in self._store.temp_files():
            if dead:
                # Gone already (another cleaner) or a read-only folder: both fine.
                with contextlib.suppress(OSError):
                    removed += self._store.delete(key)
        return removed

    # -- helpers --

    def _path(self, name: str) -> str:
        return os.path.join(self.metrics_dir, name + self.file_ext)

    def _temp_path(self) -> str:
        # metricache's temp naming (host, pid), so every cleaner knows whose it is; the
        # suffix last, so that hooks such as np.save append nothing.
        return self._path(f"{TEMP_PREFIX}{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}")

    def _sidecar_is_free(self, name: str) -> bool:
        """Whether ``<name>_date`` is (or may become) *name*'s sidecar, not a metric.

        A metric stored through a manager is always dated, so a ``<name>_date`` that
        has a sidecar of its own is a metric named ``<name>_date``.
        """
        return not os.path.exists(self._path(name + DATE_SUFFIX + DATE_SUFFIX))


# In the seed, the built-in interfaces (npz, npy, json) were FileBasedStorageInterface
# subclasses; isinstance checks in its users' code stay true. Only the isinstance
# relation: the hooks are not theirs (they write through a codec and a store).
FileBasedStorageInterface.register(FileStorageInterface)


def _check_hooks(cls: type[FileBasedStorageInterface]) -> None:
    """Fail at construction, as an abstract class would, when a hook is missing."""
    base = FileBasedStorageInterface
    # Overriding the public save/load instead (allowed by the seed) is fine too.
    missing = [
        hook
        for hook, public in (("_save", "save"), ("_load", "load"))
        if getattr(cls, hook) is getattr(base, hook)
        and getattr(cls, public) is getattr(base, public)
    ]
    if missing:
        raise TypeError(
            f"Can't instantiate {cls.__name__}: a FileBasedStorageInterface subclass must "
            f"implement {' and '.join(f'{hook}()' for hook in missing)}"
        )


def _replace(tmp: str, target: str, owner: str) -> None:
    """Rename the hook's temp file over *target*, saying so when the hook wrote elsewhere."""
    try:
        os.replace(tmp, target)
    except FileNotFoundError:
        if os.path.exists(tmp):
            raise
        raise FileNotFoundError(
            errno.ENOENT,
            f"{owner}._save() wrote no file at the path it was given; it must write "
            "exactly that path (one ending in file_ext)",
            tmp,
        ) from None


def _is_sidecar(name: str, names: set[str]) -> bool:
    """Whether stored *name* is the date sidecar of another stored name."""
    if not name.endswith(DATE_SUFFIX) or name + DATE_SUFFIX in names:
        return False
    return name[: -len(DATE_SUFFIX)] in names

"""Hostile input: unsafe names, unstorable values, unwritable folders, full disks, pickles.

Each test shows the clear error a user gets and that nothing was lost: the stored
value is intact, no file appeared or changed, and no temp file was left behind.
"""

from __future__ import annotations

import builtins
import errno
import io
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metricache._store
from metricache import (
    CacheWriteWarning,
    DatedCacheManager,
    InvalidMetricNameError,
    JsonStorageInterface,
    NpyStorageInterface,
    NpzStorageInterface,
    PickleRequiredError,
    StorageInterface,
    UnsupportedValueError,
)
from metricache._layout import record_key

from .conftest import Counter

OLD = np.arange(10)
NEW = np.arange(100_000) + 1


def manager(storage: StorageInterface, **functions: Callable[[], Any]) -> DatedCacheManager:
    """A quiet manager over *storage* defining *functions*."""
    CM = DatedCacheManager(storage, verbose=False)
    CM.set_functions_dict(dict(functions))
    return CM


def snapshot(folder: Path, locks: bool = True) -> dict[str, bytes]:
    """Every file under *folder* with its bytes (optionally without lock files)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and (locks or "locks" not in p.parts)
    }


def temp_files(folder: Path) -> list[Path]:
    """Temp files of unfinished writes anywhere under *folder*."""
    return list(folder.rglob(f"{metricache._store.TEMP_PREFIX}*"))


def same(value: object, expected: np.ndarray) -> bool:
    """Whether *value* holds *expected* (JSON gives lists back, not arrays)."""
    return np.array_equal(np.asarray(value), expected)


def assert_old_value_intact(
    storage_class: Callable[[Path], StorageInterface], folder: Path
) -> None:
    """A fresh manager loads the old value of ``m`` without computing it."""
    counter = Counter(None)
    assert same(manager(storage_class(folder), m=counter).get("m"), OLD)
    assert counter.calls == 0
    assert temp_files(folder) == []


@pytest.fixture
def stored(storage_class: type[StorageInterface], tmp_path: Path) -> DatedCacheManager:
    """A manager over ``tmp_path / 'cache'`` with ``m`` stored (value OLD)."""
    CM = manager(storage_class(tmp_path / "cache"), m=lambda: OLD)
    CM.get("m")
    return CM


# -- names --------------------------------------------------------------------------

BAD_NAMES = {
    "traversal": ("../x", "path separator"),
    "dots": ("..", r"contains '\.\.'"),
    "slash": ("a/b", "path separator"),
    "backslash": ("a\\b", "path separator"),
    "absolute": ("/etc/passwd", "path separator"),
    "nul": ("a\x00b", "control character"),
    "escape": ("a\x1b[2Jb", "control character"),
    "newline": ("a\nb", "control character"),
    "windows_char": ("a:b", "Windows forbids"),
    "too_long": ("x" * 300, "300 bytes long"),
    "too_long_with_ext": ("x" * 253, "253 bytes long; the limit is 242"),
    "too_long_utf8": ("é" * 122, "244 bytes long"),
    "reserved": ("CON", "reserved device name"),
    "reserved_with_ext": ("nul.txt", "reserved device name"),
    "reserved_lower": ("com1", "reserved device name"),
    "leading_dot": (".hidden", "starts with '.'"),
    "trailing_dot": ("name.", "ends with a space or a dot"),
    "empty": ("", "empty"),
    "int": (3, "must be str, not int"),
    "none": (None, "must be str, not NoneType"),
    "bytes": (b"m", "must be str, not bytes"),
}

ENTRY_POINTS: dict[str, Callable[[DatedCacheManager, Any], Any]] = {
    "get": lambda CM, name: CM.get(name),
    "get_use_stored_false": lambda CM, name: CM.get(name, use_stored=False),
    "getitem": lambda CM, name: CM[name],
    "load": lambda CM, name: CM.load(name),
    "save": lambda CM, name: CM.save(name, force=True),
    "compute": lambda CM, name: CM.compute(name),
    "delete": lambda CM, name: CM.delete(name),
    "info": lambda CM, name: CM.info(name),
    "exists": lambda CM, name: CM.exists(name),
    "verify": lambda CM, name: CM.verify(name),
}


@pytest.mark.parametrize("entry_point", list(ENTRY_POINTS))
@pytest.mark.parametrize("bad", list(BAD_NAMES))
def test_unsafe_name_is_refused_everywhere(
    bad: str, entry_point: str, stored: DatedCacheManager, tmp_path: Path
) -> None:
    name, problem = BAD_NAMES[bad]
    before = snapshot(tmp_path)
    with pytest.raises(InvalidMetricNameError, match=problem) as caught:
        ENTRY_POINTS[entry_point](stored, name)
    assert isinstance(caught.value, ValueError)
    # Nothing anywhere under tmp_path changed: not even a lock file (or a file outside).
    assert snapshot(tmp_path) == before
    assert_old_value_intact(type(stored.storage_interface), tmp_path / "cache")


@pytest.mark.parametrize("bad", ["traversal", "backslash", "nul", "too_long", "reserved", "empty"])
def test_set_functions_dict_refuses_unsafe_names(bad: str, stored: DatedCacheManager) -> None:
    name, problem = BAD_NAMES[bad]
    before = dict(stored.functions_dict)
    with pytest.raises(InvalidMetricNameError, match=problem):
        stored.set_functions_dict({"fine": lambda: 1, name: lambda: 2})
    # All or nothing: the old definitions stay, the good new one was not half-added.
    assert stored.functions_dict == before


# (A leading dot is no problem here: the seed's naming rule turns every "." into "p".)
@pytest.mark.parametrize(
    "bad", ["traversal", "slash", "nul", "too_long", "reserved", "windows_char"]
)
def test_collect_refuses_an_unsafe_base_name(
    bad: str, stored: DatedCacheManager, tmp_path: Path
) -> None:
    name, problem = BAD_NAMES[bad]
    before, files = dict(stored.functions_dict), snapshot(tmp_path)
    with pytest.raises(InvalidMetricNameError, match=problem):
        stored.collect(base_name=name)(lambda: 1)
    assert stored.functions_dict == before
    assert stored.parameterized_metrics == []
    assert snapshot(tmp_path) == files


@pytest.mark.parametrize(
    ("param", "problem"),
    [("../x", "path separator"), ("a\\b", "path separator"), ("\x00", "control character"),
     ("y" * 300, "bytes long"), (":", "Windows forbids")],
)  # fmt: skip
def test_parameters_making_unsafe_names_are_refused(
    param: str, problem: str, stored: DatedCacheManager, tmp_path: Path
) -> None:
    files = snapshot(tmp_path)

    def poly(a: Any) -> Any:
        return OLD

    # Declared parameters: refused at collect time, nothing registered.
    before = dict(stored.functions_dict)
    with pytest.raises(InvalidMetricNameError, match=problem):
        stored.collect(params_list=[[1], [param]])(poly)
    assert stored.functions_dict == before and not hasattr(stored, "poly")

    # Dynamic parameters: refused at call time, the family stays usable.
    CM = DatedCacheManager(stored.storage_interface, verbose=False, dynamic_metric_creation=True)
    CM.collect(params_list=[[1]])(poly)
    with pytest.raises(InvalidMetricNameError, match=problem):
        CM.poly(param)
    assert set(CM.functions_dict) == {"poly_1"}
    assert snapshot(tmp_path) == files
    assert same(CM.poly(2), OLD)  # dynamic creation itself still works


def test_longest_allowed_name_round_trips(
    storage_class: type[StorageInterface], tmp_path: Path
) -> None:
    # 242 bytes leaves room for the longest suffix metricache appends (13 bytes).
    longest, too_long = "é" * 121, "x" * 243
    CM = manager(storage_class(tmp_path), **{longest: lambda: OLD})
    assert same(CM.get(longest), OLD)
    assert same(manager(storage_class(tmp_path)).load(longest), OLD)
    assert manager(storage_class(tmp_path)).info(longest).size is not None
    with pytest.raises(InvalidMetricNameError, match="243 bytes long; the limit is 242"):
        CM.get(too_long)


# -- values -------------------------------------------------------------------------


def _objects() -> np.ndarray:
    return np.array([{"a": 1}, None], dtype=object)


def _generator() -> Iterator[int]:
    return (i for i in range(3))


BAD_VALUES: list[tuple[Callable[[Path], StorageInterface], Callable[[], Any], str]] = [
    (NpzStorageInterface, _objects, "allow_pickle=True to NpzStorageInterface"),
    (NpyStorageInterface, _objects, "allow_pickle=True to NpyStorageInterface"),
    (JsonStorageInterface, lambda: np.array([object()], dtype=object), r"value\[0\]"),
    (NpzStorageInterface, lambda: [[1, 2], [3]], "not nested containers"),
    (NpyStorageInterface, lambda: [[1, 2], [3]], "not a list"),
    (NpzStorageInterface, _generator, "cannot store a generator"),
    (NpyStorageInterface, _generator, "cannot store a generator"),
    (JsonStorageInterface, _generator, "generator"),
    (
        lambda folder: NpzStorageInterface(folder, list_limit=1000),
        lambda: list(range(100_000)),
        "100000 items exceeds list_limit=1000",
    ),
]


@pytest.mark.parametrize(("storage_class", "make_value", "problem"), BAD_VALUES)
def test_unstorable_value_raises_with_the_value_and_writes_nothing(
    storage_class: Callable[[Path], StorageInterface],
    make_value: Callable[[], Any],
    problem: str,
    tmp_path: Path,
) -> None:
    CM = manager(storage_class(tmp_path), m=lambda: OLD)
    CM.get("m")
    before = snapshot(tmp_path, locks=False)
    values: list[Any] = []

    def bad() -> Any:
        values.append(make_value())
        return values[-1]

    CM.set_functions_dict({"m": bad, "new": bad})
    for name, use_stored in (("m", False), ("new", True)):
        with pytest.raises(UnsupportedValueError, match=problem) as caught:
            CM.get(name, use_stored=use_stored)
        assert isinstance(caught.value, TypeError)
        assert caught.value.value is values[-1]  # type: ignore[attr-defined]
        assert name not in CM.cache
    assert snapshot(tmp_path, locks=False) == before
    assert_old_value_intact(storage_class, tmp_path)


# -- folders ------------------------------------------------------------------------


class ReadOnly:
    """Makes a folder unwritable: by chmod, or (as root, whom chmod does not stop) by
    failing every write under it with EACCES, as the OS would."""

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.folders: list[Path] = []

    def __call__(self, folder: Path) -> None:
        self.folders.append(folder)
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        probe = folder / "probe"
        try:
            probe.write_bytes(b"")
        except PermissionError:
            return  # chmod is enough
        probe.unlink()
        self._inject(str(folder))

    def restore(self) -> None:
        """Make the folders writable again (so tmp_path can be cleaned up)."""
        self.monkeypatch.undo()
        for folder in self.folders:
            for path in [folder, *folder.rglob("*")]:
                path.chmod(stat.S_IRWXU if path.is_dir() else 0o644)

    def _inject(self, root: str) -> None:
        def inside(path: Any) -> bool:
            try:
                full = os.path.abspath(os.fspath(path))
            except TypeError:  # a file descriptor
                return False
            return full == root or full.startswith(root + os.sep)

        def deny(path: Any) -> None:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

        real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

        def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if inside(file) and any(c in mode for c in "wxa+"):
                deny(file)
            return real_open(file, mode, *args, **kwargs)

        def os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            if inside(path) and flags & self.WRITE_FLAGS:
                deny(path)
            return real_os_open(path, flags, *args, **kwargs)

        def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
            if inside(path) and not os.path.exists(path):
                deny(path)
            real_mkdir(path, *args, **kwargs)

        def guard(real: Callable[..., Any]) -> Callable[..., Any]:
            def call(*paths: Any, **kwargs: Any) -> Any:
                if any(inside(p) for p in paths):
                    deny(paths[-1])
                return real(*paths, **kwargs)

            return call

        patch = self.monkeypatch.setattr
        patch(builtins, "open", open_)
        patch(io, "open", open_)
        patch(os, "open", os_open)
        patch(os, "mkdir", mkdir)
        for name in ("replace", "rename", "unlink", "remove", "rmdir"):
            patch(os, name, guard(getattr(os, name)))


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReadOnly]:
    """Call it with a folder to make that folder read-only for the rest of the test."""
    maker = ReadOnly(monkeypatch)
    yield maker
    maker.restore()


def test_read_only_folder_loads_but_saves_fail_clearly(
    storage_class: type[StorageInterface], tmp_path: Path, read_only: ReadOnly
) -> None:
    folder = tmp_path / "cache"
    manager(storage_class(folder), m=lambda: OLD).get("m")
    before = snapshot(tmp_path)
    read_only(folder)

    old, new = Counter(OLD), Counter(NEW)
    CM = manager(storage_class(folder), m=old, new=new)
    assert same(CM.get("m"), OLD) and old.calls == 0
    assert CM.verify("m") == CM.info("m")

    with pytest.warns(CacheWriteWarning, match="could not store metric 'new'.*Permission denied"):
        assert same(CM.get("new"), NEW)
    assert same(CM.get("new"), NEW) and new.calls == 1  # kept in memory
    with pytest.warns(CacheWriteWarning, match="could not store metric 'm'"):
        assert same(CM.get("m", use_stored=False), OLD)

    with pytest.raises(PermissionError):
        CM.save("new", force=True)
    with pytest.raises(PermissionError):
        CM.delete("m")
    assert snapshot(tmp_path) == before
    read_only.restore()
    assert_old_value_intact(storage_class, folder)
    assert not (folder / f"new{CM.storage_interface.file_ext}").exists()


def test_unreadable_entry_raises_and_is_not_quarantined(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager(NpyStorageInterface(tmp_path), m=lambda: OLD).get("m")
    data = tmp_path / "m.npy"
    before = snapshot(tmp_path)
    real_open = metricache._store.open_regular

    def no_read(path: str, root: str) -> int:
        if path == str(data):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, root)

    # Missing read permission is not corruption: it must not be "repaired" away.
    monkeypatch.setattr(metricache._store, "open_regular", no_read)
    counter = Counter(NEW)
    CM = manager(NpyStorageInterface(tmp_path), m=counter)
    for call in (CM.get, CM.load):
        with pytest.raises(PermissionError, match="m.npy"):
            call("m")
    assert counter.calls == 0
    monkeypatch.undo()
    assert snapshot(tmp_path) == before
    assert_old_value_intact(NpyStorageInterface, tmp_path)


def test_metrics_dir_that_is_a_file(storage_class: type[StorageInterface], tmp_path: Path) -> None:
    path = tmp_path / "cache"
    path.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=f"{path}.* is not a folder"):
        storage_class(path)
    with pytest.raises(NotADirectoryError, match=str(path / "sub")):
        storage_class(path / "sub")
    assert path.read_text() == "not a folder"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


# -- faults -------------------------------------------------------------------------


class DiskFull:
    """A file that accepts *budget* bytes, then fails with ENOSPC (after a partial write)."""

    def __init__(self, raw: Any, budget: int) -> None:
        self.raw, self.budget, self.written = raw, budget, 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        room = self.budget - self.written
        if view.nbytes > room:
            self.written += self.raw.write(view[:room])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += self.raw.write(view)
        return view.nbytes

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)

    def __enter__(self) -> DiskFull:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()


def fill_disk(monkeypatch: pytest.MonkeyPatch, folder: Path, budget: int) -> list[DiskFull]:
    """Make new files in *folder* fail after *budget* bytes; return the files that did."""
    real_open = builtins.open
    full: list[DiskFull] = []

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, mode, *args, **kwargs)
        if mode == "xb" and Path(file).parent == folder:
            full.append(DiskFull(f, budget))
            return full[-1]
        return f

    monkeypatch.setattr(metricache._store, "open", open_, raising=False)
    return full


@pytest.mark.parametrize("where", ["data", "record"])
def test_disk_full_keeps_the_old_value_and_warns(
    storage_class: type[StorageInterface],
    where: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    CM = manager(storage_class(tmp_path), m=lambda: OLD)
    CM.get("m")
    before = snapshot(tmp_path, locks=False)
    new = Counter(NEW)
    CM.set_functions_dict({"m": new, "new": new})
    record = record_key("m", CM.storage_interface.file_ext)
    folder = tmp_path if where == "data" else (tmp_path / record).parent
    full = fill_disk(monkeypatch, folder, budget=100)

    with pytest.warns(CacheWriteWarning, match="could not store metric 'm'.*No space left"):
        assert same(CM.get("m", use_stored=False), NEW)
    assert full and 0 < full[0].written == 100  # the fault hit halfway through a write
    assert same(CM.get("m"), NEW) and new.calls == 1  # kept in memory, not recomputed
    with pytest.warns(CacheWriteWarning, match="could not store metric 'new'"):
        assert same(CM.get("new"), NEW)

    with pytest.raises(OSError, match="No space left") as caught:
        CM.save("m", force=True)
    assert caught.value.errno == errno.ENOSPC
    assert snapshot(tmp_path, locks=False) == before
    assert_old_value_intact(storage_class, tmp_path)


# -- a pickle that runs code ----------------------------------------------------------


class Payload:
    """Unpickling this runs code: it creates the file *marker*."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def armed_array(marker: Path) -> np.ndarray:
    """An object array whose unpickling creates *marker*."""
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(marker)
    return arr


@pytest.mark.parametrize("storage_class", [NpzStorageInterface, NpyStorageInterface])
@pytest.mark.parametrize("on_corrupt", ["raise", "recompute"])
def test_crafted_pickle_runs_nothing(
    storage_class: type[StorageInterface], on_corrupt: str, tmp_path: Path
) -> None:
    folder, marker = tmp_path / "cache", tmp_path / "marker"
    folder.mkdir()
    # Legacy files (no record) as another package or an attacker could leave them.
    evil = folder / f"evil{'.npz' if storage_class is NpzStorageInterface else '.npy'}"
    if storage_class is NpzStorageInterface:
        np.savez(evil, armed_array(marker))
    else:
        np.save(evil, armed_array(marker), allow_pickle=True)
    crafted = evil.read_bytes()

    CM = DatedCacheManager(storage_class(folder), verbose=False, on_corrupt=on_corrupt)  # type: ignore[arg-type]
    CM.set_functions_dict({"evil": lambda: OLD})
    # A valid file that needs pickle is a policy refusal, not corruption: whatever
    # on_corrupt says, it raises and stays where it is (so allow_pickle=True can work).
    for call in (CM.get, CM.load):
        with pytest.raises(PickleRequiredError, match="pickled object array.*allow_pickle") as e:
            call("evil")
        assert str(evil) in str(e.value)
    assert evil.read_bytes() == crafted
    assert not marker.exists()

    # The file really is armed: numpy with allow_pickle=True runs the payload.
    armed = folder / "armed.npy"
    np.save(armed, armed_array(marker), allow_pickle=True)
    np.load(armed, allow_pickle=True)
    assert marker.exists()


def test_crafted_date_sidecar_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    np.savez(tmp_path / "x.npz", np.arange(3))
    np.savez(tmp_path / "x_date.npz", armed_array(marker))
    CM = manager(NpzStorageInterface(tmp_path))
    assert same(CM.get("x"), np.arange(3))
    assert CM.info("x").legacy is True  # dated by mtime instead
    assert isinstance(CM["x_date"], str)
    assert not marker.exists()

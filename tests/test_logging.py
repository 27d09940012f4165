"""verbose=True reports compute, save and load like the seed's prints; verbose=False is silent."""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from metricache import CacheWriteWarning, DatedCacheManager, NpzStorageInterface

DURATION = re.compile(r"Completed m in \d+(\.\d+)? (us|ms|s)\b")


@contextlib.contextmanager
def no_logging_configured() -> Iterator[None]:
    """Remove every handler from the root and metricache loggers, restoring them after.

    pytest itself installs capture handlers on the root logger; an application
    that configured no logging has none.
    """
    loggers = [logging.getLogger(), logging.getLogger("metricache")]
    saved = [list(lg.handlers) for lg in loggers]
    for lg in loggers:
        lg.handlers.clear()
    try:
        yield
    finally:
        for lg, handlers in zip(loggers, saved, strict=True):
            lg.handlers[:] = handlers


def manager(folder: Path, **kwargs: bool) -> DatedCacheManager:
    """A manager over *folder* defining the metric ``m``."""
    CM = DatedCacheManager(NpzStorageInterface(folder), **kwargs)
    CM.set_functions_dict({"m": lambda: 42})
    return CM


def dates_of(CM: DatedCacheManager) -> set[str]:
    """The stored entry's date as UTC and as local calendar date."""
    stamp = CM.date("m")
    return {stamp.strftime("%Y-%m-%d"), stamp.astimezone().strftime("%Y-%m-%d")}


def metricache_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Messages recorded on the metricache logger (or its children)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "metricache" or r.name.startswith("metricache.")
    ]


def test_reports_go_to_stderr_when_no_logging_is_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with no_logging_configured():
        CM = manager(tmp_path)  # verbose=True is the default, as in the seed
        assert CM["m"] == 42
        computed = capsys.readouterr()
        fresh = manager(tmp_path)
        assert fresh["m"] == 42
        loaded = capsys.readouterr()
    assert computed.out == "" and loaded.out == ""
    assert computed.err.count("Compute m") == 1
    assert len(DURATION.findall(computed.err)) == 1
    assert computed.err.count("Save m") == 1
    assert "Load" not in computed.err
    assert loaded.err.count("Load m") == 1
    assert any(date in loaded.err for date in dates_of(fresh))
    assert "Compute" not in loaded.err and "Save" not in loaded.err


def test_explicit_compute_save_load_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with no_logging_configured():
        CM = manager(tmp_path)
        CM.compute("m")
        compute = capsys.readouterr().err
        CM.save("m")
        save = capsys.readouterr().err
        manager(tmp_path).load("m")
        load = capsys.readouterr().err
    assert "Compute m" in compute and DURATION.search(compute) and "Save" not in compute
    assert "Save m" in save and "Compute" not in save  # the computed value is reused
    assert "Load m" in load


def test_reports_are_log_records_when_logging_is_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="metricache")
    capsys.readouterr()
    CM = manager(tmp_path)
    CM["m"]
    manager(tmp_path)["m"]
    messages = metricache_messages(caplog)
    assert sum(m == "Compute m" for m in messages) == 1
    assert sum(bool(DURATION.fullmatch(m)) for m in messages) == 1
    assert sum(m == "Save m" for m in messages) == 1
    assert sum(m.startswith("Load m") for m in messages) == 1
    assert all(
        r.levelno == logging.INFO for r in caplog.records if r.name.startswith("metricache")
    )
    # Logged, not also printed.
    assert capsys.readouterr().err == ""


def test_an_application_handler_receives_each_report_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    capsys.readouterr()
    with no_logging_configured():
        logger = logging.getLogger("metricache")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        manager(tmp_path)["m"]
    assert stream.getvalue().count("Compute m") == 1
    assert stream.getvalue().count("Save m") == 1
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("configured", [False, True], ids=["unconfigured", "caplog"])
@pytest.mark.parametrize("where", ["manager", "call"])
def test_verbose_false_is_silent(
    where: str,
    configured: bool,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="metricache")
    capsys.readouterr()
    quiet = {"verbose": False} if where == "call" else {}
    context = contextlib.nullcontext() if configured else no_logging_configured()
    with context:
        CM = manager(tmp_path, verbose=where == "call")

        @CM.collect
        def collected() -> int:
            return 1

        CM.get("m", **quiet)
        CM.get("m", use_stored=False, **quiet)
        CM.compute("m", force=True, **quiet)
        CM.save("m", force=True, **quiet)
        CM.load("m", force=True, **quiet)
        CM.collected(**quiet)
        fresh = manager(tmp_path, verbose=where == "call")
        fresh.load("m", **quiet)
        fresh.get("m", **quiet)
    assert capsys.readouterr() == ("", "")
    assert metricache_messages(caplog) == []


def test_per_call_verbose_overrides_a_quiet_manager(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with no_logging_configured():
        CM = manager(tmp_path, verbose=False)
        CM.get("m", verbose=True)
        computed = capsys.readouterr().err
        CM["m"]
        silent = capsys.readouterr().err
        manager(tmp_path, verbose=False).load("m", verbose=True)
        loaded = capsys.readouterr().err
    assert "Compute m" in computed and "Save m" in computed and DURATION.search(computed)
    assert silent == ""
    assert "Load m" in loaded


def test_reports_survive_a_closed_previous_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Notebooks and test runners swap sys.stderr and close the old stream.
    first, second = io.StringIO(), io.StringIO()
    with no_logging_configured():
        monkeypatch.setattr(sys, "stderr", first)
        CM = manager(tmp_path)
        CM.compute("m")
        first.close()
        monkeypatch.setattr(sys, "stderr", second)
        CM.compute("m", force=True)
    assert "Compute m" in second.getvalue()


# -- CacheWriteWarning: at the user's line, said once ----------------------------------


def disk_full(*args: Any, **kwargs: Any) -> Any:
    raise OSError(errno.ENOSPC, "No space left on device")


def failing_manager(folder: Path, monkeypatch: pytest.MonkeyPatch) -> DatedCacheManager:
    """A quiet manager with metrics ``m`` and ``outer`` (which uses ``m``); writes fail."""
    CM = DatedCacheManager(NpzStorageInterface(folder), verbose=False)

    @CM.collect
    def m() -> int:
        return 42

    @CM.collect
    def outer() -> int:
        return CM.m() + 1  # type: ignore[no-any-return]

    monkeypatch.setattr(CM.storage_interface, "write_entry", disk_full)
    return CM


ROUTES: dict[str, Callable[[DatedCacheManager], Any]] = {
    "get": lambda CM: CM.get("m"),
    "getitem": lambda CM: CM["m"],
    "metric": lambda CM: CM.m(),
    "nested": lambda CM: CM.outer(),
    "use_stored": lambda CM: CM.get("m", use_stored=False),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_cache_write_warning_points_at_the_users_file(
    route: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The old symptom: a fixed stacklevel named a line inside metricache.
    CM = failing_manager(tmp_path, monkeypatch)
    with pytest.warns(CacheWriteWarning, match="could not store metric") as record:
        ROUTES[route](CM)
    assert len(record) == (2 if route == "nested" else 1)  # outer and m both failed
    assert [w.filename for w in record] == [__file__] * len(record)


def test_cache_write_warning_points_at_the_calling_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    CM = failing_manager(tmp_path, monkeypatch)
    with pytest.warns(CacheWriteWarning) as record:
        line = sys._getframe().f_lineno + 1
        assert CM.m() == 42
    assert record[0].lineno == line


def test_cache_write_failure_is_printed_once_without_logging_config(tmp_path: Path) -> None:
    # An application that configured neither logging nor warnings, in its own process.
    # The old symptom: the message twice on stderr (logging's last resort + warnings).
    script = textwrap.dedent(
        f"""
        import errno
        from metricache import DatedCacheManager, NpzStorageInterface

        def disk_full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        CM = DatedCacheManager(NpzStorageInterface({str(tmp_path)!r}), verbose=False)
        CM.set_functions_dict({{"m": lambda: 42}})
        CM.storage_interface.write_entry = disk_full
        assert CM["m"] == 42
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stderr.count("could not store metric 'm'") == 1, done.stderr
    assert "CacheWriteWarning" in done.stderr


def test_cache_write_failure_is_a_log_record_when_logging_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="metricache")
    CM = failing_manager(tmp_path, monkeypatch)
    with pytest.warns(CacheWriteWarning):
        assert CM.get("m") == 42
    failures = [m for m in metricache_messages(caplog) if "could not store metric 'm'" in m]
    assert len(failures) == 1

"""pandas values as Arrow tables and back, keeping what Arrow's own pandas metadata drops.

``pyarrow.Table.from_pandas`` already records the index (a ``RangeIndex`` as three
numbers, other indexes and every MultiIndex level as columns), column order and
labels, and the pandas dtype of each column (categorical, nullable, tz-aware,
string), and ``to_pandas`` rebuilds them. What it loses, this module records in
metricache's own schema metadata and restores: ``attrs``, a ``RangeIndex`` of
column labels, the ``freq`` of a date/time index, the python storage of
``StringDtype`` columns, ``flags.allows_duplicate_labels``, and that a value was
a Series (and its name).
"""

from __future__ import annotations

import json
from typing import Any

from ..exceptions import UnsupportedValueError

__all__ = ["check_pandas", "from_table", "to_table"]

#: What Arrow raises for a column it cannot convert (mixed objects, complex numbers).
_CONVERSION_ERRORS = (TypeError, ValueError, NotImplementedError, OverflowError)


def _is_json_exact(data: Any) -> bool:
    """Whether *data* survives a JSON round trip unchanged (tuples, non-str keys do not)."""
    try:
        return bool(json.loads(json.dumps(data, allow_nan=False)) == data)
    except (TypeError, ValueError, RecursionError):
        return False


def check_pandas(value: Any, pd: Any) -> None:
    """Raise :class:`UnsupportedValueError` for a pandas value the frame codec cannot keep."""
    frame = value.to_frame() if isinstance(value, pd.Series) else value
    if not _is_json_exact(value.attrs):
        raise UnsupportedValueError(
            f"the attrs of this {type(value).__name__} ({value.attrs!r:.80}) are not plain "
            "JSON data (str keys, lists, str, numbers, bool, None), so the frame codec "
            "cannot store them faithfully; convert them or use PickleStorageInterface"
        )
    names = list(frame.index.names)
    if any(n is not None and not isinstance(n, str) for n in names):
        raise UnsupportedValueError(
            f"index names must be str or None to be stored as Arrow, not {names!r}; "
            "rename them (df.rename_axis) or use PickleStorageInterface"
        )
    if not frame.columns.is_unique:
        dupes = list(frame.columns[frame.columns.duplicated()])
        raise UnsupportedValueError(
            f"duplicate column labels {dupes!r:.80} cannot be stored as Arrow; "
            "rename them or use PickleStorageInterface"
        )


def _extras(value: Any, frame: Any, pd: Any) -> dict[str, Any]:
    """What Arrow's pandas metadata would lose, as JSON data."""
    extras: dict[str, Any] = {}
    if value.attrs:
        extras["attrs"] = value.attrs
    if isinstance(value, pd.Series):
        extras["series"] = {"unnamed": value.name is None}
    if isinstance(frame.columns, pd.RangeIndex):
        cols = frame.columns
        extras["range_columns"] = [cols.start, cols.stop, cols.step, cols.name]
    if not len(frame.columns) and isinstance(frame.index, pd.RangeIndex):
        # A table without columns has no rows: the index is all there is.
        index = frame.index
        extras["bare_range_index"] = [index.start, index.stop, index.step, index.name]
    freq = getattr(frame.index, "freq", None)
    if freq is not None and isinstance(frame.index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
        extras["freq"] = freq.freqstr
    strings = _python_strings(frame, pd)
    if strings:
        extras["python_strings"] = strings
    extras["index_dtypes"] = [
        _dtype_spec(frame.index.get_level_values(i).dtype, pd) for i in range(frame.index.nlevels)
    ]
    if not value.flags.allows_duplicate_labels:
        extras["no_duplicate_labels"] = True
    return extras


def _python_strings(frame: Any, pd: Any) -> list[list[Any]]:
    """``[position, na is NaN]`` of each column of python-backed ``StringDtype``.

    Arrow stores every pandas string column alike; ``to_pandas`` gives them the
    pyarrow storage back.
    """
    found = []
    for i, dtype in enumerate(frame.dtypes):
        if isinstance(dtype, pd.StringDtype) and dtype.storage == "python":
            found.append([i, dtype.na_value is not pd.NA])
    return found


def _dtype_spec(dtype: Any, pd: Any) -> Any:
    """*dtype* as JSON data; ``str(dtype)`` says nothing of a string dtype's storage."""
    if isinstance(dtype, pd.StringDtype):
        return ["string", dtype.storage, dtype.na_value is not pd.NA]
    return str(dtype)


def _dtype_of(spec: Any, pd: Any, np: Any) -> Any:
    if isinstance(spec, list):
        return pd.StringDtype(spec[1], na_value=np.nan if spec[2] else pd.NA)
    return pd.api.types.pandas_dtype(spec)


def _restore_index(index: Any, specs: list[Any], pd: Any, np: Any) -> Any:
    """*index* with each level's dtype as recorded (Arrow restores nullable ones as numpy)."""
    for level, spec in enumerate(specs):
        values = index.get_level_values(level)
        if _dtype_spec(values.dtype, pd) == spec:
            continue
        dtype = _dtype_of(spec, pd, np)
        if index.nlevels == 1:
            index = index.astype(dtype)
        else:
            index = index.set_levels(index.levels[level].astype(dtype), level=level)
    return index


def to_table(value: Any, pa: Any, pd: Any) -> tuple[Any, dict[str, Any]]:
    """*value* (a DataFrame or Series) as an Arrow table, and the extras to record."""
    check_pandas(value, pd)
    frame = value.to_frame() if isinstance(value, pd.Series) else value
    try:
        table = pa.Table.from_pandas(frame, preserve_index=None)
    except (pa.ArrowException, *_CONVERSION_ERRORS) as err:
        raise UnsupportedValueError(
            f"this {type(value).__name__} cannot be stored as Arrow: {err}; convert the "
            "column (complex numbers, mixed Python objects) or use PickleStorageInterface"
        ) from err
    return table, _extras(value, frame, pd)


def from_table(table: Any, extras: dict[str, Any], pd: Any, np: Any) -> Any:
    """The DataFrame or Series that :func:`to_table` turned into *table*."""
    frame = table.to_pandas()
    if "bare_range_index" in extras:
        start, stop, step, name = extras["bare_range_index"]
        frame = pd.DataFrame(
            index=pd.RangeIndex(start, stop, step, name=name), columns=frame.columns
        )
    if "range_columns" in extras:
        start, stop, step, name = extras["range_columns"]
        frame.columns = pd.RangeIndex(start, stop, step, name=name)
    if "index_dtypes" in extras:
        frame.index = _restore_index(frame.index, extras["index_dtypes"], pd, np)
    if "freq" in extras:
        frame.index = type(frame.index)(frame.index, freq=extras["freq"])
    for i, na_is_nan in extras.get("python_strings", []):
        dtype = pd.StringDtype("python", na_value=np.nan if na_is_nan else pd.NA)
        frame.isetitem(i, frame.iloc[:, i].astype(dtype))
    value = frame
    if "series" in extras:
        value = frame.iloc[:, 0]
        if extras["series"]["unnamed"]:
            value.name = None
    value.attrs = extras.get("attrs", {})
    if extras.get("no_duplicate_labels"):
        value = value.set_flags(allows_duplicate_labels=False)
    return value

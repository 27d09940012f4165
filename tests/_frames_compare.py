"""Exact comparison of frames and tables: values, dtypes, index, labels, attrs, schema."""

from __future__ import annotations

import sys
from typing import Any

FRAME_MODULES = ("pandas", "polars", "pyarrow")


def is_frame(value: Any) -> bool:
    """Whether *value* is a pandas, polars or Arrow value (compared here, not with ==)."""
    return type(value).__module__.partition(".")[0] in FRAME_MODULES


def assert_same_frame(expected: Any, actual: Any) -> None:
    """Type, values (NaN equal to NaN), dtypes, index, column labels and attrs all equal."""
    assert type(actual) is type(expected), (type(expected), type(actual))
    top = type(expected).__module__.partition(".")[0]
    if top == "pandas":
        pd = sys.modules["pandas"]
        check = pd.testing.assert_series_equal
        if isinstance(expected, pd.DataFrame):
            check = pd.testing.assert_frame_equal
            assert list(actual.dtypes) == list(expected.dtypes)
        elif isinstance(expected, pd.Index):
            check = pd.testing.assert_index_equal
        check(expected, actual, check_exact=True, check_freq=True, check_flags=True)
        assert type(actual.index) is type(expected.index)
        assert actual.index.names == expected.index.names
        assert actual.attrs == expected.attrs
    elif top == "polars":
        assert actual.schema == expected.schema
        assert actual.equals(expected, null_equal=True)
    else:
        assert actual.equals(expected, check_metadata=True), (expected.schema, actual.schema)

"""Comparing stored and loaded values exactly: type, dtype, shape, container kind, bits."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._frames_compare import assert_same_frame, is_frame


def assert_same(expected: Any, actual: Any) -> None:
    """Type, dtype, shape and bitwise values equal (so NaN == NaN, -0.0 != 0.0)."""
    assert type(actual) is type(expected), (type(expected), type(actual))
    if is_frame(expected):
        assert_same_frame(expected, actual)
    elif isinstance(expected, (np.ndarray, np.generic)):
        expected_arr, actual_arr = np.asarray(expected), np.asarray(actual)
        assert actual_arr.dtype == expected_arr.dtype
        assert actual_arr.shape == expected_arr.shape
        if actual_arr.dtype.type in (np.longdouble, np.clongdouble):
            # 80-bit extended floats carry padding bytes whose content is arbitrary
            np.testing.assert_array_equal(actual_arr, expected_arr)
        else:
            assert actual_arr.tobytes() == expected_arr.tobytes()
    elif isinstance(expected, (float, complex)):
        assert repr(actual) == repr(expected)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(expected[key], actual[key])
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected)
        for e, a in zip(expected, actual, strict=True):
            assert_same(e, a)
    else:
        assert actual == expected

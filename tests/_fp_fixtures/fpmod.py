"""Metrics whose fingerprints the tests take; the tests rewrite copies of this file."""

import functools

import numpy as np

SCALE = 3
TABLE = np.arange(4)


def deep(x):
    return x * SCALE


def helper(x):
    return deep(x) + 1


def ping(n):
    return 0 if n <= 0 else pong(n - 1)


def pong(n):
    return 1 if n <= 0 else ping(n - 1)


def metric(a=2):
    """The metric."""
    # a comment
    return helper(a) + ping(3) + int(np.sum(TABLE))


def make_closure(k):
    def closed():
        return k + 1

    return closed


closed = make_closure(5)


def _power(x, p):
    return x**p


squared = functools.partial(_power, 3, 2)


def uses_array():
    return TABLE * 2


def decorated_plain():
    return 7

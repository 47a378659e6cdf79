"""Shared by the preference-loss tests: losses under jit, and a numpy log-sigmoid for
the references written from the papers' formulas."""

import functools
import inspect

import jax
import numpy as np


@functools.cache
def jitted(fn, static: tuple[str, ...] = ()):
    """`fn` under jit (one compile per function and shape: far cheaper than op-by-op eager
    dispatch); float hyper-parameters are traced, the mode switches named in `static` are
    static where `fn` takes them."""
    params = inspect.signature(fn).parameters
    return jax.jit(fn, static_argnames=[n for n in static if n in params])


def np_logsig(x):
    return -np.logaddexp(0.0, -x)

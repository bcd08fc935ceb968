"""The zoo's only uses of private framework members, one small function each.

Each function here wraps one private member of Keras or keras-tuner that has no public
equivalent; tests/test_compat.py checks every one, so a framework release that changes one fails
loudly there instead of silently misbehaving elsewhere.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def keras_tuner_tracebacks(enabled: bool) -> Iterator[None]:
    """Whether keras-tuner prints the traceback of every failed trial (``keras_tuner.src.config.DEBUG``,
    True by default; no public setting exists). The search turns it off: an over-budget trial is a
    failed trial to keras-tuner but no crash, and real errors are in the trial's record and log."""
    from keras_tuner.src import config  # private: keras-tuner has no public switch for it

    saved, config.DEBUG = config.DEBUG, enabled
    try:
        yield
    finally:
        config.DEBUG = saved


def nested_layers(model) -> list:
    """Every layer inside ``model`` (nested models' and custom layers' sublayers too), without
    ``model`` itself: Keras' private ``Layer._flatten_layers``. The public ``model.layers`` lists
    only the top level, which misses a BatchNormalization inside a nested model or a custom layer."""
    return list(model._flatten_layers(include_self=False))  # private: no public recursive walk

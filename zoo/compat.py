"""The zoo's only uses of private framework members, one small function each.

Each function here wraps one private member of Keras, keras-tuner or TensorFlow that has no public
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


@contextlib.contextmanager
def custom_gradients_released() -> Iterator[None]:
    """Drop the gradient functions ``tf.custom_gradient`` registered while the block ran from
    TensorFlow's process-wide gradient registry (private ``ops.gradient_registry._registry``; no
    public way to unregister exists). Usable as a decorator.

    Why: each trace of a Keras train step on TensorFlow goes through
    ``ReplicaContext.all_reduce`` (Keras' optimizer sums the gradients over replicas, even with
    the default strategy), which wraps the gradients in ``tf.custom_gradient``; in graph mode that
    registers a uniquely named gradient function (``CustomGradient-<uid>``) that is never removed
    and whose closure holds the traced outputs, so every traced train-step ``FuncGraph`` (~10-15
    MB for ResNet-20) stays alive for the life of the process, ``keras.backend.clear_session()``
    and ``gc.collect()`` notwithstanding (TensorFlow issue #97697; the closure capture is what PR
    #109334 removes). The entries are only looked up while a gradient of the traced graph is
    being built (during tracing): once the block's models are done with, nothing needs them."""
    from tensorflow.python.framework import ops  # private: TensorFlow has no public unregister

    registry = ops.gradient_registry._registry
    before = set(registry)
    try:
        yield
    finally:
        for name in [k for k in registry if k not in before and k.startswith("CustomGradient-")]:
            del registry[name]

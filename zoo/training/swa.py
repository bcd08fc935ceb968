"""Stochastic weight averaging (Izmailov et al. 2018): the running mean of the weights and the
exact BatchNorm recompute that makes it a model (§3.2)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from zoo.compat import nested_layers
from zoo.errors import RunFailedError
from zoo.report import atomic_path


class WeightAveraging(keras.callbacks.Callback):
    """Stochastic weight averaging (Izmailov et al. 2018, Algorithm 1): from epoch ``start``
    (1-based) on, the trainable weights at the end of every ``every``-th epoch join a running mean.
    The mean and the last epoch it covers are saved atomically to ``path`` each time, so a killed
    run resumes with its average (an epoch re-run after a resume is not counted twice).
    :meth:`apply` then loads the mean into the model and recomputes its BatchNorm statistics (§3.2)."""

    def __init__(self, start: int, path: Path, every: int = 1):
        super().__init__()
        self.start, self.path, self.every = int(start), Path(path), int(every)
        self.mean: list[np.ndarray] | None = None
        self.count, self.last_epoch = 0, 0

    def on_train_begin(self, logs=None):
        if self.path.exists():
            with np.load(self.path) as saved:
                self.count, self.last_epoch = int(saved["count"]), int(saved["epoch"])
                self.mean = [saved[f"w{i}"] for i in range(len(self.model.trainable_weights))]

    def _due(self, epoch: int) -> bool:
        """Whether 1-based ``epoch`` joins the average (and has not already, before a resume)."""
        return epoch >= self.start and (epoch - self.start) % self.every == 0 and epoch > self.last_epoch

    def on_epoch_end(self, epoch, logs=None):
        if not self._due(epoch + 1):
            return
        weights = [keras.ops.convert_to_numpy(w).astype(np.float64) for w in self.model.trainable_weights]
        if self.mean is None:
            self.mean = weights
        else:
            self.mean = [m + (w - m) / (self.count + 1) for m, w in zip(self.mean, weights)]
        self.count, self.last_epoch = self.count + 1, epoch + 1
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, count=self.count, epoch=self.last_epoch, **{f"w{i}": m for i, m in enumerate(self.mean)})

    def apply(self, model: keras.Model, images: tf.data.Dataset, steps: int) -> dict[str, Any]:
        """Load the average into ``model``, recompute BatchNorm statistics on ``steps`` batches of
        ``images`` and return what was done, for the report."""
        if self.mean is None:
            raise RunFailedError(f"no weights were averaged: the run ended before epoch {self.start}.")
        for variable, mean in zip(model.trainable_weights, self.mean):
            variable.assign(mean.astype(variable.dtype))
        batches = recompute_batchnorm(model, images, steps)
        print(f"zoo.train: weights averaged over epochs {self.start}-{self.last_epoch} (every {self.every}: "
              f"{self.count} models); BatchNorm statistics recomputed on {batches} training batches", flush=True)
        return {"start_epoch": self.start, "every": self.every, "last_epoch": self.last_epoch,
                "models_averaged": self.count, "batchnorm_batches": batches}


def recompute_batchnorm(model: keras.Model, images: tf.data.Dataset, steps: int) -> int:
    """Replace the moving statistics of every BatchNorm layer in ``model`` by their exact means
    over ``steps`` batches of ``images`` (``(x, y)`` batches) seen in training mode, as SWA's
    ``bn_update`` does (Izmailov et al. 2018 §3.2); returns the batches used. Weights other than the
    statistics are untouched."""
    layers = [l for l in nested_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    momenta = [l.momentum for l in layers]
    sums = [[np.zeros(l.moving_mean.shape), np.zeros(l.moving_variance.shape)] for l in layers]
    batches = 0
    try:
        for l in layers:
            l.momentum = 0.0  # the moving statistics become the last batch's, read after each step
        forward = tf.function(lambda x: model(x, training=True))  # traced after the change
        for x, _ in images.take(steps):
            forward(x)
            for (mean, var), l in zip(sums, layers):
                mean += keras.ops.convert_to_numpy(l.moving_mean)
                var += keras.ops.convert_to_numpy(l.moving_variance)
            batches += 1
    finally:
        for l, m in zip(layers, momenta):
            l.momentum = m
    if batches:
        for (mean, var), l in zip(sums, layers):
            l.moving_mean.assign((mean / batches).astype(l.moving_mean.dtype))
            l.moving_variance.assign((var / batches).astype(l.moving_variance.dtype))
    return batches

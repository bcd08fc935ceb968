"""Lookahead weight averaging as airbench does it (Jordan 2024, arXiv 2404.00498, §3.6; after
Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back").

Every ``every`` optimizer steps the running average moves towards the weights,
``average = decay * average + (1 - decay) * weights``, and the weights are set to the average;
``decay`` grows with training, ``base * (step / total) ** power`` (airbench94: ``0.95 ** 5``, cubic,
every 5 steps), so early training is not averaged at all. At the last step the weights become the
average (after that step's own update, when it falls on one). Every floating-point weight takes part, BatchNorm's moving statistics included (as the
authors' ``state_dict`` lerp does); integer state (seeds, counters) does not.
"""
from __future__ import annotations

from typing import Any

import keras

__all__ = ["Lookahead", "lookahead_decay"]


def lookahead_decay(step: int, total: int, base: float = 0.95 ** 5, power: float = 3.0) -> float:
    """The average's decay at optimizer step ``step`` of ``total``: ``base * (step/total) ** power``."""
    if total <= 0:
        raise ValueError(f"total steps must be positive, got {total}")
    return float(base) * (min(step, total) / total) ** power


class Lookahead(keras.callbacks.Callback):
    """Keras callback: lookahead averaging of the model's weights (see the module docstring).

    ``total_steps`` is the run's number of optimizer steps; the step is read from the optimizer's
    ``iterations``, so a resumed run continues where it stopped once :attr:`average` (the running
    average, one variable per weight) is restored with the model."""

    def __init__(self, total_steps: int, every: int = 5, base: float = 0.95 ** 5, power: float = 3.0):
        super().__init__()
        if every < 1 or total_steps < 1:
            raise ValueError(f"lookahead needs every >= 1 and total_steps >= 1, got {every} and {total_steps}")
        self.total_steps, self.every, self.base, self.power = int(total_steps), int(every), float(base), float(power)
        self.average: list[Any] = []
        self._weights: list[Any] = []

    def tracked(self, model: keras.Model) -> list[Any]:
        """The weights that are averaged: every floating-point weight of ``model``."""
        return [w for w in model.weights if "float" in str(w.dtype)]

    def build(self, model: keras.Model) -> None:
        """Create the running average, equal to the weights now (the authors' initial state)."""
        self._weights = self.tracked(model)
        self.average = [keras.Variable(keras.ops.convert_to_numpy(w), trainable=False, name=f"lookahead_{i}",
                                       dtype=w.dtype) for i, w in enumerate(self._weights)]  # a copy, not the variable

    def on_train_begin(self, logs=None):
        if not self.average:
            self.build(self.model)

    def on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if step % self.every == 0 and step <= self.total_steps:  # the last step too, as the authors' loop
            self.update(lookahead_decay(step, self.total_steps, self.base, self.power))
        if step >= self.total_steps:
            self.finish()

    def update(self, decay: float) -> None:
        """One lookahead step: the average moves towards the weights, the weights take the average."""
        for avg, w in zip(self.average, self._weights):
            # the lerp avg + (1 - decay) (w - avg), as the authors' ``lerp_``: exact where w == avg (frozen weights)
            avg.assign(avg + (1.0 - decay) * (keras.ops.cast(w.value, avg.dtype) - avg))
            w.assign(avg)

    def finish(self) -> None:
        """The end of training: the weights become the average (``decay = 1``)."""
        for avg, w in zip(self.average, self._weights):
            w.assign(avg)

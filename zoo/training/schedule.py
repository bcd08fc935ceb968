"""The learning rate of a recipe's ``schedule`` section, per step (:class:`RecipeSchedule`)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import keras

from zoo.training.recipe import Recipe


@keras.saving.register_keras_serializable(package="zoo")
class RecipeSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate of :class:`zoo.training.recipe.ScheduleSection`, per step.

    Time is measured in fractional epochs (``step / steps_per_epoch``), so step milestones drop
    the rate after the epoch they name. ``onecycle`` without ``warmup_epochs`` rises over the
    first 30% of the schedule (Smith & Topin 2019; PyTorch's ``pct_start``). ``cycles`` restarts
    the decay that many times after the warm-up, each cycle ``(epochs - warmup) / cycles`` long.
    """

    def __init__(self, lr: float, steps_per_epoch: int, name: str = "constant", epochs: float = 1.0,
                 warmup_epochs: float = 0.0, start_factor: float = 0.1, milestones: Sequence[float] = (),
                 gamma: float = 0.1, final_factor: float = 0.0, cycles: int = 1):
        self.lr, self.steps_per_epoch, self.name = float(lr), int(steps_per_epoch), name
        self.epochs, self.warmup_epochs = float(epochs), float(warmup_epochs)
        if name == "onecycle" and not warmup_epochs:
            self.warmup_epochs = 0.3 * self.epochs
        self.start_factor, self.gamma, self.final_factor = float(start_factor), float(gamma), float(final_factor)
        self.milestones = [float(m) for m in milestones]
        self.cycles = int(cycles)

    def _decay(self, e):
        ops, w = keras.ops, self.warmup_epochs
        length = max(self.epochs - w, 1e-9) / self.cycles
        if self.cycles > 1:  # time within the current cycle
            e = ops.where(e > w, w + ops.mod(e - w, length), e)
        t = ops.clip((e - w) / length, 0.0, 1.0)
        if self.name == "step":
            passed = sum((ops.cast(e >= m, "float32") for m in self.milestones), ops.zeros_like(e))
            return ops.power(self.gamma, passed)
        if self.name == "cosine":
            return self.final_factor + (1 - self.final_factor) * 0.5 * (1 + ops.cos(math.pi * t))
        if self.name in ("linear", "onecycle"):
            return 1 - (1 - self.final_factor) * t
        return ops.ones_like(e)

    def __call__(self, step):
        ops = keras.ops
        e = ops.cast(step, "float32") / float(self.steps_per_epoch)
        factor = self._decay(e)
        if self.warmup_epochs > 0:
            warm = self.start_factor + (1 - self.start_factor) * ops.minimum(e / self.warmup_epochs, 1.0)
            factor = ops.where(e < self.warmup_epochs, warm, factor)
        return self.lr * factor

    def get_config(self) -> dict[str, Any]:
        return {"lr": self.lr, "steps_per_epoch": self.steps_per_epoch, "name": self.name, "epochs": self.epochs,
                "warmup_epochs": self.warmup_epochs, "start_factor": self.start_factor,
                "milestones": self.milestones, "gamma": self.gamma, "final_factor": self.final_factor,
                "cycles": self.cycles}


def make_schedule(recipe: Recipe, steps_per_epoch: int) -> RecipeSchedule:
    """The recipe's ``optimizer.lr`` under its ``schedule`` section."""
    s = recipe.schedule
    return RecipeSchedule(recipe.optimizer.lr, steps_per_epoch, s.name, recipe.schedule_epochs, s.warmup_epochs,
                          s.start_factor, s.milestones, s.gamma, s.final_factor, s.cycles)

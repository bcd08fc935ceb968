"""Which recipe fields each entry point of the one fit path honours, and the checks that run
before any data loads.

Every entry point — ``zoo train`` (``train``), a tune trial (``trial``), a variant of the paper
comparison (``paper``) and ``zoo train-distributed`` (``distributed``) — trains through
:func:`zoo.training.fit.train`, so a field honoured by one is honoured by all unless
:data:`REFUSALS` says otherwise. A refused field is never dropped: :func:`check` raises a
:class:`~zoo.training.recipe.RecipeError` naming the field, the entry point and what to do
instead, before a run directory is made or data is loaded.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import zoo.data as zdata
from zoo.errors import did_you_mean
from zoo.models import registry
from zoo.training import distill, features
from zoo.training.model import from_logits, init_weights_path
from zoo.training.recipe import SECTIONS, Recipe, RecipeError, lookahead_settings

ENTRY_POINTS = ("train", "trial", "paper", "distributed")
EVAL_AUGMENTATIONS = ("center_crop", "imagenet_crop")  # deterministic: the random ones apply in training only
_SEARCH = ("trial", "paper")


@dataclass(frozen=True)
class Refusal:
    """``field`` (``section.name``) cannot be honoured by ``entries`` when ``applies(value)``."""

    field: str
    entries: tuple[str, ...]
    fix: str
    applies: Callable[[Any], bool] | None = None  # None: any value other than the default

    def refuses(self, recipe: Recipe, entry: str) -> bool:
        if entry not in self.entries:
            return False
        value = field_value(recipe, self.field)
        return self.applies(value) if self.applies else value != default_value(self.field)


REFUSALS: tuple[Refusal, ...] = (
    Refusal("train.steps_per_execution", ("distributed",),
            "the distributed step runs one batch per call: drop the field (1) or train with `zoo train`"),
    *(Refusal(f"train.{name}", ("distributed",), "weight averaging's BatchNorm recompute runs on one process: "
              "train it with `zoo train`") for name in ("swa_start_epoch", "swa_every")),
    *(Refusal(f"train.{name}", ("distributed",), "the teachers are not replicated across workers: distil with "
              "`zoo train`") for name in ("teachers", "distill_weight", "distill_temperature", "distill_flip")),
    Refusal("train.lookahead", ("distributed",),
            "the lookahead average is kept on one process: train it with `zoo train`"),
    *(Refusal(f"train.{name}", ("distributed",), "the whitening initialisation and its bias freeze run on one "
              "process: train it with `zoo train`") for name in ("whitening_images", "whitening_eps",
                                                                  "whitening_bias_epochs")),
    Refusal("output.runs_dir", _SEARCH,
            "each trial trains under the search's project directory: use --project-dir instead"),
    Refusal("output.name", _SEARCH,
            "each trial trains under the search's project directory: use --project-dir instead"),
    Refusal("data.split", _SEARCH,
            "a search chooses by accuracy on images held out of the training split: keep data.split=train",
            applies=lambda v: v != "train"),
    Refusal("data.validation", _SEARCH,
            "a search chooses by validation accuracy: hold images out, e.g. data.validation=2000",
            applies=lambda v: not v),
)


def recipe_fields() -> list[str]:
    """Every field of a recipe as ``section.name`` (``model.options`` stands for the build options)."""
    return ["name", "description", *(f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls))]


def field_value(recipe: Recipe, dotted: str) -> Any:
    """The value of ``section.name`` in ``recipe``."""
    section, _, name = dotted.partition(".")
    return getattr(getattr(recipe, section), name) if name else getattr(recipe, section)


def default_value(dotted: str) -> Any:
    """The default of ``section.name``."""
    return field_value(Recipe(), dotted)


def refused_fields(entry: str) -> dict[str, str]:
    """``{field: fix}`` of the fields ``entry`` may refuse (every other field it honours)."""
    return {r.field: r.fix for r in REFUSALS if entry in r.entries}


def check(recipe: Recipe, entry: str = "train") -> None:
    """Refuse what ``entry`` cannot honour, then run :func:`validate_recipe`."""
    if entry not in ENTRY_POINTS:
        raise RecipeError(f"unknown entry point {entry!r}.{did_you_mean(entry, ENTRY_POINTS)} "
                          f"Valid: {', '.join(ENTRY_POINTS)}.")
    for refusal in REFUSALS:
        if refusal.refuses(recipe, entry):
            value = field_value(recipe, refusal.field)
            raise RecipeError(f"{refusal.field}={value!r} is not honoured by the {entry} entry point: {refusal.fix}.")
    validate_recipe(recipe)


def validate_recipe(recipe: Recipe) -> None:
    """Check what :mod:`zoo.training.recipe` cannot, without building or loading anything: the
    model name and build options (via the registry), the augmentation and normalisation names (via
    :mod:`zoo.data`), that ``train.init_weights`` and the teachers exist. Raises ``ZooError``s."""
    registry.resolve_plan(recipe.model.name, **recipe.model.options)
    if features.uses_whitening(recipe):  # the one check that builds the network: only when asked for
        features.check_whitening_model(recipe, registry.build_network(recipe.model.name, **recipe.model.options))
        if recipe.train.whitening_eps != default_value("train.whitening_eps") and not recipe.train.whitening_images:
            raise RecipeError("train.whitening_eps applies to the whitening initialisation: set "
                              "train.whitening_images (e.g. 5000) or drop train.whitening_eps.")
    if lookahead_settings(recipe) and recipe.train.steps_per_execution != 1:
        raise RecipeError("train.lookahead averages between single steps: drop train.steps_per_execution (1).")
    if recipe.train.init_weights is not None:
        init_weights_path(recipe.train.init_weights)
    for spec in recipe.train.teachers:
        distill.check_teacher_spec(spec)
    if recipe.train.teachers and not from_logits(recipe):
        raise RecipeError("train.teachers: distillation needs a student that outputs logits; "
                          "drop model.classifier_activation.")
    d = recipe.data
    for name_of in ("data_dir", "manual_dir"):
        if getattr(d, name_of) and not zdata.is_tfds_name(d.source):
            raise RecipeError(f"data.{name_of} applies to tensorflow-datasets sources only, not {d.source!r}: "
                              f"drop it (a folder, archive or .npz source is its own path).")
    for name_of, names, valid in (("augment", d.augment, zdata.AUGMENTATIONS),
                                  ("eval_augment", d.eval_augment, EVAL_AUGMENTATIONS),
                                  ("normalization", [d.normalization], zdata.NORMALIZATIONS)):
        for name in names:
            if name not in valid:
                raise RecipeError(f"data.{name_of}: unknown {name!r}.{did_you_mean(name, valid)} "
                                  f"Valid: {', '.join(valid)}.")

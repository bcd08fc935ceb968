"""Training recipes: configurations as data.

A recipe is a YAML file with six sections (``model``, ``data``, ``optimizer``, ``schedule``,
``train``, ``output``) that map onto the dataclasses below. :func:`load_recipe` reads one from a
path or a name resolved in the top-level ``recipes/`` folder, follows ``extends:`` (a budget
recipe inherits a paper recipe and changes a few fields), applies dotted command-line overrides
such as ``optimizer.lr=0.05 train.epochs=3 model.downsample=max`` (values are YAML-typed) and
validates every field by name and type. :func:`resolve` turns a recipe back into the plain dict
that a run directory saves as ``recipe.yaml``; loading that file gives the same recipe.

Weight decay
    ``optimizer.weight_decay_mode: l2`` (the default for SGD and Adam) is the papers' coupled
    L2 weight decay, as in Caffe and PyTorch's ``SGD(weight_decay=...)``: the gradient of every
    weight tensor of rank >= 2 (convolution and dense kernels; not biases or batch-norm
    scales/offsets) gets ``weight_decay * w`` added before momentum, implemented as a
    ``keras.regularizers.L2(weight_decay / 2)`` penalty on those variables. The per-epoch
    ``loss``/``val_loss`` therefore include the penalty; the final evaluation in the report does
    not. ``decoupled`` (the default and only choice for ``adamw``) uses the Keras optimizer's
    ``weight_decay`` (Loshchilov & Hutter 2019: ``w -= lr * weight_decay * w``), again on
    rank >= 2 tensors only.

This module imports nothing from ``zoo``; model options are passed through untouched and checked
by :func:`zoo.models.registry.build` when the model is built.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from zoo.errors import ZooError

__all__ = [
    "DataSection",
    "ModelSection",
    "OptimizerSection",
    "OutputSection",
    "Recipe",
    "RecipeError",
    "ScheduleSection",
    "TrainSection",
    "apply_overrides",
    "dump",
    "find_recipe",
    "from_dict",
    "list_recipes",
    "load_recipe",
    "parse_override",
    "recipe_dirs",
    "resolve",
    "same_experiment",
]


class RecipeError(ZooError):
    """A recipe that cannot be loaded: unknown file or field, wrong type or impossible value."""


# ------------------------------------------------------------------------------------- sections
@dataclass
class ModelSection:
    """``name`` of a registered model; every other key is a build option passed to
    :func:`zoo.models.registry.build` (``downsample``, ``stem``, ``dropout``, ...)."""

    name: str = "resnet20"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSection:
    """What to train on and how to feed it (see :func:`zoo.data.load` / ``make_pipeline``).

    ``validation`` is a count of held-out training images (int, e.g. 5000 for CIFAR's 45k/5k
    split, He et al. 2016 §4.2) or a fraction (float < 1); 0 trains on everything.
    ``eval_split`` is evaluated once after training (e.g. ``test``) when the source has it.
    """

    source: str = "embedded"
    split: str = "train"
    validation: int | float = 0.1
    seed: int = 0
    batch_size: int = 128
    augment: list[str] = field(default_factory=list)
    eval_augment: list[str] = field(default_factory=list)
    normalization: str = "per_channel"
    image_size: int | None = None
    data_dir: str | None = None
    manual_dir: str | None = None
    limit: int | None = None
    cache: bool = True
    shuffle_buffer: int = 10000
    eval_split: str | None = None


@dataclass
class OptimizerSection:
    """Optimizer and weight decay; see the module docstring for ``weight_decay_mode``.

    ``weight_decay_mode`` of ``None`` means ``l2`` for sgd/adam and ``decoupled`` for adamw.
    """

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    weight_decay_mode: Literal["l2", "decoupled"] | None = None
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    clipnorm: float | None = None

    @property
    def decay_mode(self) -> str:
        """The weight-decay mode in effect."""
        if self.weight_decay_mode:
            return self.weight_decay_mode
        return "decoupled" if self.name == "adamw" else "l2"


@dataclass
class ScheduleSection:
    """Learning-rate schedule, evaluated per step; times are in (fractional) epochs.

    - ``constant``: ``lr``;
    - ``step``: ``lr * gamma ** (milestones passed)`` (He et al. 2016 §4.2; Springenberg et al.
      2015 §3.1);
    - ``cosine``: half-cosine from ``lr`` to ``lr * final_factor`` (Loshchilov & Hutter 2017);
    - ``linear``: linear fall from ``lr`` to ``lr * final_factor`` (Caffe's ``poly`` policy with
      power 1, the SqueezeNet solver, Iandola et al. 2016);
    - ``onecycle``: linear rise then linear fall to ``lr * final_factor`` (Smith & Topin 2019);
      without ``warmup_epochs`` it rises over the first 30% of the schedule.

    Each may start with ``warmup_epochs`` of linear warm-up from ``lr * start_factor`` (Goyal et
    al. 2017 §2.2); for ``onecycle`` the warm-up is the rising half. ``epochs`` of ``None``
    stretches the schedule over ``train.epochs``. ``cycles`` > 1 splits the time after the
    warm-up into that many equal cycles and restarts the decay at each (SGDR with a constant
    cycle length, Loshchilov & Hutter 2017 §3; the cyclical rate of SWA, Izmailov et al. 2018 §3.1).
    """

    name: Literal["constant", "step", "cosine", "linear", "onecycle"] = "constant"
    epochs: float | None = None
    warmup_epochs: float = 0.0
    start_factor: float = 0.1
    milestones: list[float] = field(default_factory=list)
    gamma: float = 0.1
    final_factor: float = 0.0
    cycles: int = 1


@dataclass
class TrainSection:
    """The training loop.

    ``nan_policy``: ``stop`` ends training at the first NaN/Inf loss, keeps the last good
    checkpoint and reports status ``nan``; ``raise`` does the same and then raises.
    ``deterministic`` enables TensorFlow op determinism (bit-identical reruns on one machine).
    ``jit_compile`` is off by default (XLA was slower on the CPUs measured: results/benchmarks/RUN.md).
    ``precision``: ``auto`` takes the device's choice (:func:`zoo.training.device.choose_settings`: float32
    on CPU, mixed_float16 on GPU), or a Keras dtype policy to force one.
    ``progress``: ``auto`` draws a progress bar on a terminal and one line per epoch otherwise.
    ``init_weights``: start from these weights instead of a random initialisation (a run directory
    or its ``model.weights.h5``, the same model and normalisation): a warm restart in the sense of
    SGDR (Loshchilov & Hutter 2017 §3), or fine-tuning. A resumed run continues from its own
    checkpoints, not from these.
    ``swa_start_epoch``: stochastic weight averaging (Izmailov et al. 2018 §3): from this epoch
    (1-based) on, the weights at the end of every epoch join a running average, which becomes the
    final model once its BatchNorm statistics are recomputed on the training images (§3.2). ``0``
    (default) keeps the last epoch's weights. Pair it with a constant or high final rate (§3.1).
    ``swa_every``: average only every that many epochs from ``swa_start_epoch``: with
    ``schedule.cycles``, the ends of the cycles, where the rate is lowest (§3.1's cyclical rate).
    ``teachers``: knowledge distillation (Hinton et al. 2015 §2; :mod:`zoo.training.distill`): trained
    models (``NAME:TAG``, ``NAME:PATH`` or a ``.keras`` file / run directory) whose softened
    probabilities, averaged, the student also learns; ``distill_weight`` is the share of the loss
    they get (the labels get the rest), ``distill_temperature`` the softening ``T``;
    ``distill_flip`` also shows the teachers each image's horizontal mirror and averages the two
    views (a better target at twice the teachers' cost).
    """

    epochs: int = 10
    seed: int = 0
    label_smoothing: float = 0.0
    deterministic: bool = True
    steps_per_epoch: int | None = None
    nan_policy: Literal["stop", "raise"] = "stop"
    jit_compile: bool = False
    steps_per_execution: int = 1
    progress: Literal["auto", "bar", "epoch", "none"] = "auto"
    precision: Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"] = "auto"
    init_weights: str | None = None
    swa_start_epoch: int = 0
    swa_every: int = 1
    teachers: list[str] = field(default_factory=list)
    distill_weight: float = 0.9
    distill_temperature: float = 4.0
    distill_flip: bool = False


@dataclass
class OutputSection:
    """Where runs go: ``runs_dir/name``, ``name`` defaulting to ``<recipe>-<model>``."""

    runs_dir: str = "runs"
    name: str | None = None
    tensorboard: bool = True


SECTIONS: dict[str, type] = {
    "model": ModelSection, "data": DataSection, "optimizer": OptimizerSection,
    "schedule": ScheduleSection, "train": TrainSection, "output": OutputSection,
}
TOP_LEVEL = ("name", "description", *SECTIONS)
# fields that do not change what is trained: a run may be resumed with them changed
COSMETIC = {"description": None, "output": None, "train": ("progress",)}


@dataclass
class Recipe:
    """A whole recipe. ``name`` defaults to the YAML file's stem."""

    name: str = "recipe"
    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    train: TrainSection = field(default_factory=TrainSection)
    output: OutputSection = field(default_factory=OutputSection)

    @property
    def run_name(self) -> str:
        """The run directory's name: ``output.name`` or ``<recipe>-<model>``."""
        return self.output.name or f"{self.name}-{self.model.name}"

    @property
    def schedule_epochs(self) -> float:
        """The schedule's length in epochs."""
        return self.schedule.epochs if self.schedule.epochs is not None else self.train.epochs


# ----------------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 insists on ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.VERBOSE),
    list("-+0123456789."),
)


def _yaml_load(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        raise RecipeError(f"{where} is not valid YAML: {err}") from None


def dump(recipe: Recipe) -> str:
    """The resolved recipe as YAML text (sections in schema order)."""
    return yaml.safe_dump(resolve(recipe), sort_keys=False, default_flow_style=None, allow_unicode=True)


# ---------------------------------------------------------------------------------- finding files
def recipe_dirs() -> list[Path]:
    """Folders searched for recipe names: ``./recipes``, the repository's ``recipes/`` (a checkout or
    an editable install) and ``<prefix>/share/zoo/recipes`` (where a wheel installs them)."""
    dirs = [Path.cwd() / "recipes", Path(__file__).resolve().parents[2] / "recipes",
            Path(sys.prefix) / "share" / "zoo" / "recipes"]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def list_recipes() -> list[str]:
    """Names of the recipes found in :func:`recipe_dirs`, sorted."""
    return sorted({p.stem for d in recipe_dirs() for p in d.glob("*.y*ml")})


def find_recipe(name: str | Path, relative_to: Path | None = None) -> Path:
    """The YAML file for a path or a recipe name (``resnet20-paper`` or ``resnet20-paper.yaml``)."""
    path = Path(name).expanduser()
    candidates = [path] if path.suffix in (".yaml", ".yml") else [path, path.with_name(path.name + ".yaml"),
                                                                   path.with_name(path.name + ".yml")]
    bases = ([relative_to] if relative_to else []) + [Path.cwd()] + recipe_dirs()
    for base in bases:
        for cand in candidates:
            full = cand if cand.is_absolute() else base / cand
            if full.is_file():
                return full
    known = list_recipes()
    near = difflib.get_close_matches(path.stem, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    raise RecipeError(
        f"no recipe {str(name)!r}: not a file and not in {', '.join(map(str, recipe_dirs())) or 'any recipes/ folder'}."
        f"{hint} Known recipes: {', '.join(known) or 'none'}."
    )


# ------------------------------------------------------------------------------ command lines
def parse_args_with_overrides(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None):
    """``parser.parse_args`` that also takes ``key=value`` overrides after options
    (``zoo train R --overwrite train.epochs=3``), which argparse alone rejects once an option has
    ended the positional ``overrides``. Anything else left over is the usual argparse error."""
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e]
    if stray or (extra and not isinstance(getattr(args, "overrides", None), list)):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


# --------------------------------------------------------------------------------------- loading
def load_recipe(source: str | Path | Mapping | Recipe, overrides: Sequence[str] = ()) -> Recipe:
    """Load a recipe from a path, a name in ``recipes/``, a dict or a :class:`Recipe`, then apply
    dotted ``overrides`` (``"optimizer.lr=0.05"``) and validate it.

    >>> recipe = load_recipe("resnet20-budget", ["train.epochs=3", "model.downsample=max"])
    """
    if isinstance(source, Recipe):
        raw = resolve(source)
    elif isinstance(source, Mapping):
        raw = _expand(copy.deepcopy(dict(source)), None, [])
    else:
        raw = _read_file(find_recipe(source), [])
    return from_dict(apply_overrides(raw, overrides))


def _read_file(path: Path, chain: list[Path]) -> dict[str, Any]:
    if path.resolve() in chain:
        raise RecipeError(f"recipe {path} extends itself: {' -> '.join(map(str, chain + [path]))}.")
    raw = _yaml_load(path.read_text(), str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path} must hold a mapping of sections, got {type(raw).__name__}.")
    raw.setdefault("name", path.stem)
    return _expand(raw, path, chain + [path.resolve()])


def _expand(raw: dict[str, Any], path: Path | None, chain: list[Path]) -> dict[str, Any]:
    """Merge ``raw`` over the recipe it ``extends`` (if any)."""
    parent_name = raw.pop("extends", None)
    if parent_name is None:
        return raw
    if not isinstance(parent_name, str):
        raise RecipeError(f"extends must be a recipe name or path, got {parent_name!r}.")
    parent = _read_file(find_recipe(parent_name, path.parent if path else None), chain)
    parent.pop("name", None)
    parent.pop("description", None)
    return _merge(parent, raw)


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge, everything else (lists included) replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ------------------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optimizer.lr=0.05"`` -> ``(["optimizer", "lr"], 0.05)``; the value is read as YAML."""
    key, sep, value = str(text).partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(
            f"override {text!r} must look like section.field=value, e.g. optimizer.lr=0.05 or train.epochs=3."
        )
    return key.split("."), _yaml_load(value, f"the value of override {text!r}") if value.strip() else None


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``raw`` with each dotted override set (nested mappings are created as needed)."""
    if isinstance(overrides, str):
        overrides = [overrides]
    out = copy.deepcopy(dict(raw))
    for text in overrides:
        keys, value = parse_override(text)
        node = out
        for depth, key in enumerate(keys[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise RecipeError(f"override {text!r}: {where} is {child!r}, not a section with fields.")
            node = child
        node[keys[-1]] = value
    return out


# ------------------------------------------------------------------------------------ validation
def from_dict(raw: Mapping[str, Any]) -> Recipe:
    """Validate a plain dict (as read from YAML, ``extends`` already merged) into a :class:`Recipe`."""
    if not isinstance(raw, Mapping):
        raise RecipeError(f"a recipe must be a mapping of sections, got {type(raw).__name__}.")
    for key in raw:
        if key not in TOP_LEVEL:
            raise _unknown_field(str(key), None, TOP_LEVEL)
    sections: dict[str, Any] = {}
    for key, cls in SECTIONS.items():
        value = raw.get(key) or {}
        if not isinstance(value, Mapping):
            raise RecipeError(f"section {key!r} must be a mapping of fields, got {value!r}.")
        sections[key] = _model_section(value) if cls is ModelSection else _section(cls, key, value)
    recipe = Recipe(name=_check("name", raw.get("name", "recipe"), str),
                    description=_check("description", raw.get("description") or "", str), **sections)
    _check_values(recipe)
    return recipe


def _model_section(raw: Mapping[str, Any]) -> ModelSection:
    options = {str(k): copy.deepcopy(v) for k, v in raw.items() if k != "name"}
    if "name" not in raw:
        raise RecipeError("model.name is required: the registered model to build, e.g. resnet20.")
    return ModelSection(name=_check("model.name", raw["name"], str), options=options)


def _section(cls: type, section: str, raw: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        if key not in hints:
            raise _unknown_field(str(key), section, names)
        values[key] = _check(f"{section}.{key}", value, hints[key])
    return cls(**values)


def _unknown_field(key: str, section: str | None, valid: Sequence[str]) -> RecipeError:
    near = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    where = f"{section}.{key}" if section else key
    scope = f"section {section!r}" if section else "a recipe (top level)"
    hint = f" Did you mean {(section + '.') if section else ''}{near[0]}?" if near else ""
    return RecipeError(f"unknown field {where!r}.{hint} Valid fields of {scope}: {', '.join(valid)}.")


def _type_name(hint: Any) -> str:
    """``int | None`` -> ``"int or null"``; ``Literal["a", "b"]`` -> ``"one of a, b"``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is list:
        return f"a list of {_type_name(args[0])}"
    if origin is dict:
        return "a mapping"
    return getattr(hint, "__name__", str(hint))


def _check(where: str, value: Any, hint: Any) -> Any:
    """``value`` if it matches the type ``hint`` (ints are accepted and kept for floats)."""
    ok, converted = _convert(value, hint)
    if not ok:
        raise RecipeError(
            f"{where}={value!r} has the wrong type ({type(value).__name__}); expected {_type_name(hint)}."
        )
    return converted


def _convert(value: Any, hint: Any) -> tuple[bool, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True, value
    if hint is type(None):
        return value is None, value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, converted = _convert(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is Literal:
        return value in args, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            return False, value
        items = [_convert(v, args[0]) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if origin is dict:
        return isinstance(value, Mapping), dict(value) if isinstance(value, Mapping) else value
    return isinstance(value, hint), value


def _check_values(r: Recipe) -> None:
    """Range checks the types cannot express."""
    rules = [
        (r.data.batch_size >= 1, "data.batch_size must be at least 1"),
        (r.data.validation >= 0 and (isinstance(r.data.validation, int) or r.data.validation < 1),
         "data.validation must be a count (int >= 0) or a fraction in [0, 1)"),
        (r.data.limit is None or r.data.limit >= 1, "data.limit must be at least 1"),
        (r.data.image_size is None or r.data.image_size >= 1, "data.image_size must be positive"),
        (r.optimizer.lr > 0, "optimizer.lr must be positive"),
        (0 <= r.optimizer.momentum < 1, "optimizer.momentum must be in [0, 1)"),
        (r.optimizer.weight_decay >= 0, "optimizer.weight_decay must be >= 0"),
        (not (r.optimizer.name == "adamw" and r.optimizer.weight_decay_mode == "l2"),
         "optimizer adamw is Adam with decoupled weight decay; use name: adam for L2 weight decay"),
        (r.train.epochs >= 1, "train.epochs must be at least 1"),
        (0 <= r.train.label_smoothing < 1, "train.label_smoothing must be in [0, 1)"),
        (r.train.steps_per_epoch is None or r.train.steps_per_epoch >= 1, "train.steps_per_epoch must be >= 1"),
        (r.train.steps_per_execution >= 1, "train.steps_per_execution must be >= 1"),
        (0 <= r.train.swa_start_epoch <= r.train.epochs,
         f"train.swa_start_epoch must be in [0, {r.train.epochs}] (0: no weight averaging)"),
        (r.schedule_epochs > 0, "schedule.epochs must be positive"),
        (0 <= r.schedule.warmup_epochs < r.schedule_epochs,
         f"schedule.warmup_epochs must be in [0, {r.schedule_epochs}) (the schedule's length)"),
        (0 < r.schedule.start_factor <= 1, "schedule.start_factor must be in (0, 1]"),
        (0 <= r.schedule.final_factor <= 1, "schedule.final_factor must be in [0, 1]"),
        (r.schedule.gamma > 0, "schedule.gamma must be positive"),
        (r.schedule.cycles >= 1, "schedule.cycles must be at least 1"),
        (r.train.swa_every >= 1, "train.swa_every must be at least 1"),
        (0 <= r.train.distill_weight <= 1, "train.distill_weight must be in [0, 1]"),
        (r.train.distill_temperature > 0, "train.distill_temperature must be positive"),
        (r.train.teachers or not r.train.distill_flip,
         "train.distill_flip mirrors the teachers' views, and train.teachers names none: add teachers or drop it"),
        (list(r.schedule.milestones) == sorted(set(r.schedule.milestones)) and
         all(m > 0 for m in r.schedule.milestones), "schedule.milestones must be increasing positive epochs"),
        (r.schedule.name == "step" or not r.schedule.milestones,
         f"schedule.milestones only apply to the step schedule, not {r.schedule.name!r}"),
    ]
    for ok, message in rules:
        if not ok:
            raise RecipeError(f"recipe {r.name!r}: {message}.")


# ------------------------------------------------------------------------------------- resolving
def resolve(recipe: Recipe) -> dict[str, Any]:
    """The recipe as a plain dict with every field (defaults included), model options inlined;
    ``load_recipe(resolve(r)) == r``."""
    out: dict[str, Any] = {"name": recipe.name, "description": recipe.description}
    out["model"] = {"name": recipe.model.name, **copy.deepcopy(recipe.model.options)}
    for key in list(SECTIONS)[1:]:
        out[key] = dataclasses.asdict(getattr(recipe, key))
    return out


def same_experiment(a: Recipe | Mapping, b: Recipe | Mapping) -> list[str]:
    """The dotted fields that differ between two recipes, ignoring cosmetic ones (description,
    output, train.progress); empty when a run of ``a`` may be resumed as ``b``."""
    da = resolve(a) if isinstance(a, Recipe) else dict(a)
    db = resolve(b) if isinstance(b, Recipe) else dict(b)
    diffs = []
    for key in sorted(set(da) | set(db)):
        cosmetic = COSMETIC.get(key, ())
        if key in COSMETIC and cosmetic is None:
            continue
        va, vb = da.get(key), db.get(key)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            for sub in sorted(set(va) | set(vb)):
                if sub not in cosmetic and va.get(sub) != vb.get(sub):
                    diffs.append(f"{key}.{sub}: {va.get(sub)!r} -> {vb.get(sub)!r}")
        elif va != vb:
            diffs.append(f"{key}: {va!r} -> {vb!r}")
    return diffs

"""keras-tuner search over a recipe's downsampling choices ("pool or stride?").

:func:`tune` takes a training recipe, derives a search space from the model's own downsampling
sites (:func:`zoo.models.registry.sites`), lets a keras-tuner oracle pick configurations, trains each one
with the recipe (same data, schedule and seed for every trial) and writes a study report
(:mod:`zoo.studies.study`): every trial, the Pareto fronts of accuracy against FLOPs and latency, the
effect of each choice at each site, and the best configuration as a recipe ``zoo train`` accepts.

    python -m zoo.search.tuner all_cnn_c-study --max-trials 12              # or: zoo tune ...
    python -m zoo.search.tuner resnet20-study --choices max,avg,conv,blur --budget-flops 45M --resume

Search space
    ``sites="each"`` (default): one ``hp.Choice("ds/<site>")`` per searched site;
    ``sites="shared"``: one ``hp.Choice("ds/all")`` applied to every searched site. ``choices``
    is a list for every site (default :data:`DEFAULT_CHOICES`: max, avg, conv, blur, s2d) or a
    mapping ``{site or glob: [choices]}``; only the sites it names are then searched and the rest
    keep the recipe's choice. ``"blur"`` searches the blur filter size too, as a conditional
    ``hp.Int("ds/<site>/filter_size", 2, 7)`` that exists only while that site's choice is blur
    (``hp.conditional_scope``); ``"blur5"`` is blur with a fixed filter size. ``"none"`` (no
    downsampling: the network's total stride changes) is never searched unless listed. Sites whose
    recipe choice is ``none`` (the CIFAR stems of ResNet-ImageNet, SqueezeNet, FishNet) are not
    searched unless a mapping names them. ``tune_lr``/``tune_wd`` add ``hp.Float`` ``lr`` (log
    scale, recipe's rate / 5 .. x 5) and ``weight_decay`` (recipe's / 10 .. x 10; 1e-5 .. 1e-3
    when the recipe has none).

Shortcut and mirror sites
    A ResNet shortcut (role ``shortcut``) and a FishNet head pool mirror a main site's
    resolution. ``shortcuts="follow"`` (default) gives them their main site's choice (stage
    ``max`` -> max-pool then 1x1 projection; ``avg`` is ResNet-D; ``conv`` is the published 1x1
    stride-2 projection), so a trial changes a whole stage transition at once.
    ``shortcuts="search"`` gives each its own choice (``sites="each"`` only); ``"published"``
    keeps the recipe's.

Budgets
    ``budget_flops`` (multiply-adds per image, :func:`zoo.flops.count_flops`) and
    ``budget_latency_ms`` (measured, see :func:`measure_latency`) are checked on the built model
    before any training: a configuration over budget is recorded as ``infeasible`` and reported to
    keras-tuner as a failed trial (``FailedTrialError``; ``max_consecutive_failed_trials`` is set
    above ``max_trials``, so rejections never stop the search). Rejected trials count towards
    ``max_trials``. A budget that even the cheapest configuration of the space exceeds is an error
    before the search starts (FLOPs are additive over sites, so the cheapest configuration is found
    site by site; latency is checked on that configuration).

Trials
    Each trial directory ``<project>/trial_<id>/`` holds keras-tuner's ``trial.json`` and
    ``zoo_trial.json``: status (completed / infeasible / nan / failed), the hyperparameter values,
    the per-site downsampling, the full resolved recipe, final and best validation accuracy, the
    per-epoch history, trainable parameters, FLOPs, latency (ms/image, batch ``latency_batch``,
    median of ``latency_repeats`` timed calls after warm-up), training time and peak RSS. With
    ``isolate="process"`` (default) every trial runs in a fresh Python process (``python -m
    zoo.search.tuner _trial spec.json``; its output goes to ``log.txt`` and the screen, its result to
    ``child.json``; it dies with the search process, even on SIGKILL): Keras/TensorFlow memory
    cannot accumulate (in one process it grew 25-40 MB a trial on this stack even with
    ``keras.backend.clear_session()`` and ``gc.collect()``), the trial's ``peak_rss_mb`` is that
    process's high-water mark and ``search_rss_mb`` is the search process's RSS after the trial.
    Starting a process costs ~5 s a trial (importing TensorFlow). Three crashed trials in a row
    (not over-budget or diverged ones) stop the search. ``isolate="none"`` runs trials in the search process
    (``clear_session`` + ``gc`` after each; ``peak_rss_mb`` is the peak during that trial, reset
    through ``/proc/self/clear_refs``): faster to start, for tiny searches and tests.

Resuming
    The project directory (default ``runs/tune/<recipe>-<model>``) holds keras-tuner's own state.
    Kill the search and run the same command with ``--resume``: finished trials are kept (a trial
    whose ``zoo_trial.json`` is complete is never trained again), the interrupted one is run again.
    An existing project without ``--resume`` or ``--overwrite`` is an error; ``--resume`` with a
    different recipe, space, oracle or budget is an error too; ``max_trials`` may grow.

Oracles
    ``bayesian`` needs scipy and scikit-learn (zoo depends on ``keras-tuner[bayesian]``; an
    environment without them gets a clear error naming the install). ``random`` and ``bayesian``
    start with the *uniform* configurations (every searched site set to one choice: all-max,
    all-avg, all-conv, ...), the direct pool-versus-stride comparisons, unless
    ``uniform_first=False``. ``hyperband`` (``max_epochs`` = the recipe's epochs,
    factor 3) trains each of its rungs from scratch for that rung's epochs (the schedule shrunk to
    fit) instead of continuing a checkpoint; the report's fronts and effects use only trials
    trained for the full number of epochs when there are any.

Chief and workers (keras-tuner's distributed mode)
    Run the same command, with the same ``--project-dir`` on a shared file system, once as the
    chief and once per worker; start the chief first::

        export KERASTUNER_ORACLE_IP=127.0.0.1 KERASTUNER_ORACLE_PORT=8000
        KERASTUNER_TUNER_ID=chief   zoo tune R --project-dir P --overwrite &   # serves the oracle
        KERASTUNER_TUNER_ID=tuner0  zoo tune R --project-dir P &               # trains trials
        KERASTUNER_TUNER_ID=tuner1  zoo tune R --project-dir P &

    The chief (an ID containing "chief") checks the project directory (``--resume`` /
    ``--overwrite`` apply to it only), runs the oracle and writes the report once every worker is
    done; it trains nothing. Workers get trials over gRPC and write their trial records. The chief
    polls for finished workers every 20 s (keras-tuner), so it may exit up to 20 s after the last
    trial. Needs the ``tensorboard`` package (keras-tuner's protobuf definitions import it).
"""
from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import fnmatch
import gc
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import numpy as np
import tensorflow as tf
import yaml

import zoo.data as zdata
from zoo import flops as zflops
from zoo import runtime
from zoo.models import registry
from zoo import report as zreport
from zoo.training import run as ztrain
from zoo.errors import ZooError, unknown
from zoo.layers.downsample import CHOICE_OPTIONS, Choice, Site
from zoo.training.recipe import Recipe, RecipeError, load_recipe, parse_args_with_overrides, resolve, same_experiment

__all__ = [
    "DEFAULT_CHOICES",
    "Budget",
    "ProjectExistsError",
    "SearchSpace",
    "StudyResult",
    "TuneError",
    "add_tune_arguments",
    "compare",
    "main",
    "measure_latency",
    "parse_choices",
    "parse_flops",
    "run_config",
    "tune",
    "tune_from_args",
]

DEFAULT_CHOICES: tuple[str, ...] = ("max", "avg", "conv", "blur", "s2d")
ORACLES = ("random", "bayesian", "hyperband")
SHORTCUTS = ("follow", "search", "published")
ISOLATION = ("process", "none")
OBJECTIVE = "val_accuracy"
LR_FACTOR = 5.0  # lr searched in [lr / 5, lr * 5], log scale
WD_FACTOR = 10.0  # weight decay searched in [wd / 10, wd * 10], log scale
WD_DEFAULT_RANGE = (1e-5, 1e-3)
BLUR_SIZES: tuple[int, ...] = CHOICE_OPTIONS["blur"]["filter_size"]
RECORD = "zoo_trial.json"  # per-trial record, beside keras-tuner's trial.json
SEARCH = "search.json"  # what the project searches; checked on --resume
SHARED = "all"  # the site name of the one shared choice
MAX_CRASHES = 3  # trials in a row that crash (status failed, not infeasible or nan) stop the search


class TuneError(ZooError):
    """A search that cannot start: bad space, budget, project directory or option."""


class ProjectExistsError(TuneError):
    """The project directory already holds a search and neither resume nor overwrite was asked."""


# ----------------------------------------------------------------------------------- helpers
def parse_flops(text: str | float | None) -> float | None:
    """``"300M"``, ``"1.2G"``, ``"5e7"`` or a number -> multiply-adds (None stays None)."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = re.fullmatch(r"\s*([0-9.]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgG]?)\s*", str(text))
    if not match:
        raise TuneError(f"budget_flops={text!r} must be a number of multiply-adds such as 3e8, 300M or 1.2G.")
    scale = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2).lower()]
    return float(match.group(1)) * scale


def parse_choices(items: Sequence[str] | None) -> list[str] | dict[str, list[str]] | None:
    """Command-line ``--choices`` values -> what :func:`tune` takes.

    ``["max,avg,conv"]`` -> ``["max", "avg", "conv"]`` (every searched site);
    ``["pool1=max,conv", "pool2=avg,blur"]`` -> ``{"pool1": [...], "pool2": [...]}`` (only those
    sites); a bare list mixed with ``site=`` items applies to ``"*"`` (every site) first.
    """
    if not items:
        return None
    mapping: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = str(item).partition("=")
        key, values = (key.strip(), values) if sep else ("*", key)
        mapping[key] = [v.strip() for v in values.split(",") if v.strip()]
    return mapping["*"] if list(mapping) == ["*"] else mapping


def _flow(value: Any) -> str:
    """A value as one-line YAML, for a dotted override."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip().removesuffix("...").strip()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _status_field(key: str) -> int | None:
    """``VmRSS``/``VmHWM`` of this process in kB (Linux), or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """This process's resident set size now, in MiB."""
    kb = _status_field("VmRSS")
    if kb is None:
        try:
            import psutil

            return psutil.Process().memory_info().rss / 2**20
        except ImportError:
            return None
    return kb / 1024


def peak_rss_mb() -> float | None:
    """This process's peak RSS in MiB (since start, or since :func:`reset_peak_rss`)."""
    kb = _status_field("VmHWM")
    if kb is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return kb / 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------- search space
def _canonical(text: Any, where: str) -> str:
    """A choice as the hyperparameter value: ``max``, ..., ``blur`` (filter size searched) or
    ``blurN`` (fixed filter size)."""
    choice = Choice.parse(text, where)
    if choice.kind == "blur" and not (isinstance(text, str) and text.strip().lower() == "blur"):
        return f"blur{choice.filter_size}"
    return choice.kind


def _spec(value: str, filter_size: int | None) -> str:
    """Hyperparameter value (+ filter size) -> the ``downsample`` spec string."""
    if value == "blur":
        return str(Choice("blur", int(filter_size or 3)))
    return str(Choice.parse(value))


@dataclass
class SearchSpace:
    """The search space of one recipe's model: which sites are searched over which choices.

    Build it with :meth:`create`; :meth:`declare` puts it into a keras-tuner ``HyperParameters``
    and :meth:`downsample` turns a trial's values back into a ``downsample`` mapping."""

    model: str
    sites: list[Site]
    base: dict[str, str]  # every site -> the recipe's choice (single-choice sites already applied)
    mode: str  # each | shared
    shortcuts: str  # follow | search | published
    searched: dict[str, list[str]]  # unit ("site" or SHARED) -> hyperparameter values
    shared_sites: list[str] = field(default_factory=list)
    followers: dict[str, str] = field(default_factory=dict)  # follower site -> main site (follow mode)
    lr: tuple[float, float, float] | None = None  # (low, high, default)
    weight_decay: tuple[float, float, float] | None = None

    # ..................................................................... construction
    @classmethod
    def create(cls, recipe: Recipe, *, sites: str = "each", choices: Any = None, shortcuts: str = "follow",
               tune_lr: bool = False, tune_wd: bool = False) -> SearchSpace:
        """Derive the space from ``recipe``'s model; raises :class:`TuneError`/``ZooError`` for an
        unknown site or choice and an empty space."""
        if sites not in ("each", "shared"):
            raise TuneError(f"sites={sites!r} must be 'each' (one choice per site) or 'shared' (one for all).")
        if shortcuts not in SHORTCUTS:
            raise TuneError(f"shortcuts={shortcuts!r} must be one of {', '.join(SHORTCUTS)}.")
        if sites == "shared" and shortcuts == "search":
            raise TuneError("shortcuts='search' gives each shortcut its own choice: it needs sites='each'.")
        name, options = recipe.model.name, dict(recipe.model.options)
        all_sites = registry.sites(name, **options)
        if not all_sites:
            raise TuneError(f"{name} has no downsampling sites: there is nothing to search.")
        plan = registry.resolve_plan(name, **options)
        base = {s.name: str(plan.choices[s.name]) for s in all_sites}
        by_name = {s.name: s for s in all_sites}
        main = [s.name for s in all_sites if s.follows is None]
        follower_names = [s.name for s in all_sites if s.follows is not None]
        default_units = [n for n in main if Choice.parse(base[n]).kind != "none"]
        if shortcuts == "search":
            default_units += [n for n in follower_names if Choice.parse(base[by_name[n].follows]).kind != "none"]
        if not default_units and choices is None:
            raise TuneError(f"{name} with these options downsamples nowhere (every site is 'none'): nothing to "
                            f"search. Name sites explicitly, e.g. choices={{'{main[0]}': ['max', 'conv']}}.")

        requested = cls._requested(choices)
        per_site: dict[str, list[str]] = {}
        for pattern, values in requested.items():
            if pattern == "*":
                matched = default_units
            else:
                matched = [n for n in by_name if fnmatch.fnmatchcase(n, pattern)]
                if not matched:
                    raise unknown(f"downsampling site of {name}", pattern, by_name,
                                  hint="See `zoo info " + name + "` for its sites.")
                bad = [n for n in matched if n in follower_names and shortcuts != "search"]
                if bad and len(bad) == len(matched):
                    raise TuneError(
                        f"site {bad[0]!r} of {name} follows {by_name[bad[0]].follows!r} (shortcuts={shortcuts!r}); "
                        f"search {by_name[bad[0]].follows!r} instead or pass shortcuts='search'.")
                matched = [n for n in matched if n not in bad]
            for site in matched:
                canon = list(dict.fromkeys(_canonical(v, f" (site {site!r} of {name})") for v in values))
                if not canon:
                    raise TuneError(f"no choices for site {site!r} of {name}: the search space is empty.")
                if site in follower_names and "none" in canon:
                    raise TuneError(f"site {site!r} of {name} follows {by_name[site].follows!r} and cannot be "
                                    f"'none' while that site downsamples; drop 'none' from its choices.")
                per_site[site] = canon

        requested_main = [n for n in main if n in per_site]
        # single-choice sites are fixed, not searched
        for site, values in list(per_site.items()):
            if len(values) == 1 and values[0] != "blur":  # a lone 'blur' still searches its filter size
                base[site] = _spec(values[0], None)
                del per_site[site]

        space = cls(model=name, sites=all_sites, base=base, mode=sites, shortcuts=shortcuts, searched={})
        if sites == "shared":
            lists = {tuple(v) for v in per_site.values()}
            if len(lists) > 1:
                raise TuneError("sites='shared' searches one choice for every site, so every site needs the same "
                                f"choices; got {', '.join(f'{k}: {v}' for k, v in per_site.items())}.")
            if per_site:
                space.searched = {SHARED: list(next(iter(lists)))}
                space.shared_sites = [n for n in per_site if n not in follower_names]
        else:
            space.searched = dict(per_site)
        if shortcuts == "follow":  # followers of every searched or fixed-by-choices main site
            space.followers = {n: by_name[n].follows for n in follower_names if by_name[n].follows in requested_main}
        if tune_lr:
            lr = recipe.optimizer.lr
            space.lr = (lr / LR_FACTOR, lr * LR_FACTOR, lr)
        if tune_wd:
            wd = recipe.optimizer.weight_decay
            space.weight_decay = ((wd / WD_FACTOR, wd * WD_FACTOR, wd) if wd > 0
                                  else (*WD_DEFAULT_RANGE, math.sqrt(WD_DEFAULT_RANGE[0] * WD_DEFAULT_RANGE[1])))
        if not any(len(v) > 1 or v == ["blur"] for v in space.searched.values()) and not (tune_lr or tune_wd):
            fixed = ", ".join(f"{k}={v}" for k, v in space.downsample({}).items() if k in requested_main) or "none"
            raise TuneError(f"the search space of {name} is empty: every searched site has a single choice "
                            f"({fixed}) and neither lr nor weight decay "
                            f"is tuned. Give at least two choices for a site.")
        return space

    @staticmethod
    def _requested(choices: Any) -> dict[str, list[str]]:
        if choices is None:
            return {"*": list(DEFAULT_CHOICES)}
        if isinstance(choices, str):
            return {"*": [c.strip() for c in choices.split(",") if c.strip()]}
        if isinstance(choices, Mapping):
            out = {}
            for key, values in choices.items():
                if isinstance(values, str):
                    values = [c.strip() for c in values.split(",") if c.strip()]
                if not isinstance(values, (list, tuple)):
                    raise TuneError(f"choices for {key!r} must be a list of choices, got {values!r}.")
                out[str(key)] = list(values)
            if not out:
                raise TuneError("choices is an empty mapping: the search space is empty.")
            return out
        if isinstance(choices, (list, tuple)):
            if not choices:
                raise TuneError("choices is empty: the search space is empty.")
            return {"*": list(choices)}
        raise TuneError(f"choices must be a list or a mapping site -> list, got {type(choices).__name__}.")

    # ......................................................................... keras-tuner
    def hp_name(self, unit: str) -> str:
        return f"ds/{unit}"

    def declare(self, hp: kt.HyperParameters) -> kt.HyperParameters:
        """Declare the space's hyperparameters (conditional filter sizes included) in ``hp``."""
        by_name = {s.name: s for s in self.sites}
        for unit, values in self.searched.items():
            name = self.hp_name(unit)
            parent = by_name.get(unit)
            main_hp = self.hp_name(parent.follows) if parent is not None and parent.follows else None
            main_values = self.searched.get(parent.follows) if main_hp else None
            if main_values and "none" in main_values:  # a searched follower exists only while its main downsamples
                with hp.conditional_scope(main_hp, [v for v in main_values if v != "none"]):
                    self._declare_unit(hp, unit, name, values)
            else:
                self._declare_unit(hp, unit, name, values)
        if self.lr:
            hp.Float("lr", self.lr[0], self.lr[1], sampling="log", default=self.lr[2])
        if self.weight_decay:
            hp.Float("weight_decay", self.weight_decay[0], self.weight_decay[1], sampling="log",
                     default=self.weight_decay[2])
        return hp

    def _declare_unit(self, hp, unit: str, name: str, values: list[str]) -> None:
        base = _canonical(self.base.get(unit, values[0]), "") if unit in self.base else values[0]
        default = base if base in values else values[0]
        hp.Choice(name, values, default=default)
        if "blur" in values:
            with hp.conditional_scope(name, ["blur"]):
                hp.Int(f"{name}/filter_size", min(BLUR_SIZES), max(BLUR_SIZES), default=3)

    def hyperparameters(self) -> kt.HyperParameters:
        return self.declare(kt.HyperParameters())

    # ............................................................................ configs
    def downsample(self, values: Mapping[str, Any]) -> dict[str, str]:
        """The per-site ``downsample`` mapping (every site) of a trial's ``values``."""
        ds = dict(self.base)
        for unit in self.searched:
            name = self.hp_name(unit)
            if name not in values:  # inactive (a follower whose main site is none)
                continue
            spec = _spec(values[name], values.get(f"{name}/filter_size"))
            for site in (self.shared_sites if unit == SHARED else [unit]):
                ds[site] = spec
        for follower, main in self.followers.items():
            ds[follower] = ds[main]
        return ds

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """Dotted recipe overrides that turn the base recipe into this trial's recipe."""
        out = [f"model.downsample={_flow(self.downsample(values))}"]
        if "lr" in values:
            out.append(f"optimizer.lr={float(values['lr'])!r}")
        if "weight_decay" in values:
            out.append(f"optimizer.weight_decay={float(values['weight_decay'])!r}")
        return out

    def units(self) -> list[str]:
        """The searched sites (or ``all``) in forward order."""
        return list(self.searched)

    def size(self) -> int | None:
        """Number of distinct configurations (None when lr or weight decay is searched)."""
        if self.lr or self.weight_decay:
            return None
        n = 1
        for values in self.searched.values():
            n *= len(values) - ("blur" in values) + ("blur" in values) * len(BLUR_SIZES)
        return n

    def complete(self, hp: kt.HyperParameters, wanted: Mapping[str, Any]) -> dict[str, Any]:
        """``wanted`` completed the way keras-tuner records values: active hyperparameters only,
        defaults where not given."""
        hps = kt.HyperParameters()
        for p in hp.space:
            hps.merge([p])
            if hps.is_active(p):
                value = wanted.get(p.name, p.default)
                hps.values[p.name] = value
        return dict(hps.values)

    def uniform_values(self, hp: kt.HyperParameters) -> list[dict[str, Any]]:
        """One configuration per choice with every searched site set to it (where allowed)."""
        order = list(dict.fromkeys(v for values in self.searched.values() for v in values))
        out = []
        for value in order:
            wanted = {self.hp_name(u): value for u, vals in self.searched.items() if value in vals}
            config = self.complete(hp, wanted)
            if config not in out:
                out.append(config)
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (``search.json``, the report)."""
        rows = []
        for s in self.sites:
            unit = SHARED if s.name in self.shared_sites else s.name
            rows.append({"site": s.name, "role": s.role, "published": s.default, "base": self.base[s.name],
                         "follows": s.follows, "choices": self.searched.get(unit) if unit in self.searched else None,
                         "shared": s.name in self.shared_sites,
                         "rule": ("follows " + self.followers[s.name]) if s.name in self.followers else
                                 ("searched" if unit in self.searched else "fixed")})
        return {"model": self.model, "mode": self.mode, "shortcuts": self.shortcuts, "units": self.units(),
                "sites": rows, "lr": list(self.lr) if self.lr else None,
                "weight_decay": list(self.weight_decay) if self.weight_decay else None, "size": self.size()}

    def label(self, values: Mapping[str, Any]) -> str:
        """A short description of a configuration: ``pool1=max pool2=blur5 lr=0.05``."""
        ds = self.downsample(values)
        parts = [f"{u}={ds[self.shared_sites[0]] if u == SHARED else ds[u]}" for u in self.searched]
        parts += [f"{k}={float(values[k]):.3g}" for k in ("lr", "weight_decay") if k in values]
        return " ".join(parts)


# ---------------------------------------------------------------------------- measurement
@dataclass(frozen=True)
class Budget:
    """Per-image limits checked on the built model before training."""

    flops: float | None = None
    latency_ms: float | None = None

    def __bool__(self) -> bool:
        return self.flops is not None or self.latency_ms is not None

    def violations(self, flops: float | None, latency_ms: float | None) -> list[str]:
        out = []
        if self.flops is not None and flops is not None and flops > self.flops:
            out.append(f"{flops / 1e6:.2f} M FLOPs > budget {self.flops / 1e6:.2f} M")
        if self.latency_ms is not None and latency_ms is not None and latency_ms > self.latency_ms:
            out.append(f"{latency_ms:.3f} ms/image > budget {self.latency_ms:.3f} ms")
        return out

    def as_dict(self) -> dict[str, float | None]:
        return {"flops": self.flops, "latency_ms": self.latency_ms}


def measure_latency(model: keras.Model, *, batch: int = 1, repeats: int = 30, warmup: int = 5) -> dict[str, Any]:
    """Inference latency of ``model`` on this machine: ms per image at batch size ``batch``,
    median (and 10th/90th percentiles) of ``repeats`` timed calls of a ``tf.function`` after
    ``warmup`` untimed ones, random 0..255 input."""
    shape = (batch, *model.input_shape[1:])
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, size=shape).astype("float32"))
    fn = tf.function(lambda t: model(t, training=False))
    for _ in range(max(warmup, 1)):
        np.asarray(fn(x))
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        np.asarray(fn(x))
        times.append(1000.0 * (time.perf_counter() - start) / batch)
    q = np.percentile(times, [10, 90])
    return {"batch": batch, "repeats": repeats, "median_ms": statistics.median(times), "p10_ms": float(q[0]),
            "p90_ms": float(q[1]), "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "cpu_count": os.cpu_count()}


class _Rows(keras.callbacks.Callback):
    """Collects each epoch's logs (after :class:`zoo.training.run.EpochStats` added its timings)."""

    def __init__(self, rows: list[dict[str, Any]]):
        super().__init__()
        self.rows = rows

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})


def _cost(recipe: Recipe, info: Any, latency: Mapping[str, int] | None) -> dict[str, Any]:
    """Params, FLOPs and (optionally) latency of ``recipe``'s model, built without normalisation."""
    _, net = ztrain.build_model(recipe, info, keras.layers.Identity())
    out = {"params": int(zflops.count_params(net)), "flops": int(zflops.count_flops(net))}
    if latency is not None:
        out["latency"] = measure_latency(net, **latency)
        out["latency_ms"] = out["latency"]["median_ms"]
    return out


def run_config(recipe: Recipe, *, budget: Budget = Budget(), latency: Mapping[str, int] | None = None,
               verbose: bool = True) -> dict[str, Any]:
    """Train one configuration in this process, the way every trial is trained.

    Loads the recipe's data, builds the model and measures params, FLOPs and latency; returns
    status ``infeasible`` (untrained) when that breaks ``budget``; otherwise seeds as
    :func:`zoo.training.run.train` does, trains ``train.epochs`` on the training split and validates on
    the held-out images after each epoch. Returns a JSON-ready record (no files written)."""
    latency = {"batch": 1, "repeats": 30, "warmup": 5, **(latency or {})}
    started = time.perf_counter()
    runtime.seed_everything(recipe.train.seed, recipe.train.deterministic)
    data = ztrain.load_data(recipe)
    if data.validation is None:
        raise TuneError(f"recipe {recipe.name!r} holds out no validation images (data.validation=0); a search "
                        f"needs them for its objective, e.g. data.validation=2000.")
    record: dict[str, Any] = _cost(recipe, data.info, latency)
    keras.backend.clear_session()
    record.update(status="completed", message="", epochs=recipe.train.epochs, history=[],
                  num_train=data.info.num_train, num_validation=data.info.num_validation)
    over = budget.violations(record["flops"], record.get("latency_ms"))
    if over:
        record.update(status="infeasible", message="over budget: " + "; ".join(over) + " (not trained)",
                      wall_time_s=time.perf_counter() - started)
        return record
    runtime.seed_everything(recipe.train.seed, recipe.train.deterministic)
    normalization = zdata.normalization_layer(recipe.data.normalization, data.raw_train)
    model, _ = ztrain.build_model(recipe, data.info, normalization)
    ztrain.compile_model(model, recipe, data)
    rows: list[dict[str, Any]] = []
    guard, stats = ztrain.NanGuard(), ztrain.EpochStats(data.images_per_epoch)
    try:
        model.fit(data.train, validation_data=data.validation, epochs=recipe.train.epochs,
                  steps_per_epoch=data.steps_per_epoch if recipe.train.steps_per_epoch else None,
                  callbacks=[guard, stats, _Rows(rows)], shuffle=False,
                  verbose=2 if verbose and recipe.train.progress != "none" else 0)
    except RuntimeError:
        if guard.tripped is None:
            raise
        record.update(status="nan", message=f"training diverged: {guard.tripped}")
    record["history"] = rows
    if rows:
        last = rows[-1]
        best = max(rows, key=lambda r: r.get("val_accuracy", -1.0))
        record.update(val_accuracy=last.get("val_accuracy"), val_loss=last.get("val_loss"),
                      accuracy=last.get("accuracy"), loss=last.get("loss"),
                      best_val_accuracy=best.get("val_accuracy"), best_epoch=best.get("epoch"),
                      train_time_s=sum(r.get("epoch_time_s", 0.0) for r in rows),
                      train_images_per_s=statistics.median([r["train_images_per_s"] for r in rows
                                                            if "train_images_per_s" in r] or [0.0]))
    if record["status"] == "completed" and not isinstance(record.get("val_accuracy"), float):
        record.update(status="failed", message="no validation accuracy was reported")
    record["wall_time_s"] = time.perf_counter() - started
    return record


# ------------------------------------------------------------------------------------ trials
def _die_with_parent(parent_pid: int | None) -> bool:
    """In a trial process: ask the kernel to kill it when the search process dies (even by
    SIGKILL; Linux ``PR_SET_PDEATHSIG``). False when the search process is already gone."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    return parent_pid is None or os.getppid() == parent_pid


def _epoch_overrides(recipe: Recipe, epochs: int | None) -> list[str]:
    """Overrides that shrink the recipe's schedule to ``epochs`` (Hyperband rungs)."""
    if not epochs or epochs == recipe.train.epochs:
        return []
    f, s = epochs / recipe.train.epochs, recipe.schedule
    out = [f"train.epochs={int(epochs)}"]
    if s.epochs is not None:
        out.append(f"schedule.epochs={s.epochs * f!r}")
    if s.warmup_epochs:
        out.append(f"schedule.warmup_epochs={s.warmup_epochs * f!r}")
    if s.milestones:
        out.append(f"schedule.milestones={_flow([m * f for m in s.milestones])}")
    return out


class _Runner:
    """Runs trials of one project (in this process or a child process) and writes their records."""

    def __init__(self, recipe: Recipe, project_dir: Path, *, budget: Budget, latency: Mapping[str, int],
                 isolate: str, verbose: bool = True):
        self.recipe, self.project_dir, self.budget = recipe, Path(project_dir), budget
        self.latency, self.isolate, self.verbose = dict(latency), isolate, verbose

    def run(self, trial_id: str, overrides: Sequence[str], info: Mapping[str, Any]) -> dict[str, Any]:
        """Train the base recipe with ``overrides`` as trial ``trial_id``; ``info`` goes into the
        record (values, config, label). A finished record with the same overrides is reused."""
        tdir = self.project_dir / f"trial_{trial_id}"
        tdir.mkdir(parents=True, exist_ok=True)
        old = read_record(tdir)
        if old and old.get("status") in ("completed", "infeasible") and old.get("overrides") == list(overrides):
            print(f"zoo.tune: trial {trial_id} already finished ({old['status']}); reusing its record", flush=True)
            return old
        recipe = load_recipe(self.recipe, list(overrides))
        head = {"trial_id": trial_id, **info, "overrides": list(overrides), "started": _now(),
                "tuner_id": os.environ.get("KERASTUNER_TUNER_ID", "tuner0"), "isolate": self.isolate,
                "recipe": resolve(recipe)}
        t0 = time.perf_counter()
        result = self._child(tdir, recipe) if self.isolate == "process" else self._inline(recipe)
        record = {**head, **result, "trial_wall_time_s": time.perf_counter() - t0, "search_rss_mb": rss_mb(),
                  "finished": _now()}
        zreport.write_json(record, tdir / RECORD)
        print(f"zoo.tune: trial {trial_id} {record['status']}: {info.get('label', '')} "
              f"val_accuracy={record.get('val_accuracy')} flops={record.get('flops')} "
              f"latency_ms={record.get('latency_ms')} peak_rss_mb={record.get('peak_rss_mb')} "
              f"search_rss_mb={record['search_rss_mb']}" + (f" ({record['message']})" if record.get("message") else ""),
              flush=True)
        return record

    def _inline(self, recipe: Recipe) -> dict[str, Any]:
        reset = reset_peak_rss()
        try:
            result = run_config(recipe, budget=self.budget, latency=self.latency, verbose=self.verbose)
        except (TuneError, RecipeError):
            raise
        except Exception as err:  # noqa: BLE001 - a broken configuration fails its trial, not the search
            result = {"status": "failed", "message": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()}
        finally:
            keras.backend.clear_session()
            gc.collect()
        result["peak_rss_mb"] = peak_rss_mb()
        result["peak_rss_scope"] = "trial" if reset else "process"
        return result

    def _child(self, tdir: Path, recipe: Recipe) -> dict[str, Any]:
        spec = {"recipe": resolve(recipe), "budget": self.budget.as_dict(), "latency": self.latency,
                "verbose": self.verbose, "out": str(tdir / "child.json"), "parent_pid": os.getpid()}
        Path(spec["out"]).unlink(missing_ok=True)
        zreport.write_json(spec, tdir / "spec.json")
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "zoo.search.tuner", "_trial", str(tdir / "spec.json")]
        with open(tdir / "log.txt", "a") as log:
            log.write(f"--- {_now()} {' '.join(cmd)}\n")
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            try:
                for line in proc.stdout:
                    log.write(line)
                    if self.verbose and not line.startswith(("WARNING: All log", "I0000", "W0000")):
                        sys.stdout.write("  | " + line)
                rc = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        out = Path(spec["out"])
        if out.exists():
            return zreport.read_json(out)
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        return {"status": "failed", "message": f"trial process ended ({how}) without a result; see {tdir / 'log.txt'}"}


def _child_main(spec_path: str) -> int:
    """``python -m zoo.search.tuner _trial SPEC``: run one trial (see :class:`_Runner`)."""
    spec = json.loads(Path(spec_path).read_text())
    if not _die_with_parent(spec.get("parent_pid")):
        print("zoo.tune: the search process is gone; not running the trial", file=sys.stderr)
        return 1
    try:
        recipe = load_recipe(spec["recipe"])
        result = run_config(recipe, budget=Budget(**spec["budget"]), latency=spec["latency"],
                            verbose=spec.get("verbose", True))
    except Exception as err:  # noqa: BLE001 - reported in the record
        result = {"status": "failed", "message": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
    result.update(peak_rss_mb=peak_rss_mb(), peak_rss_scope="trial process", trial_pid=os.getpid())
    zreport.write_json(result, spec["out"])
    return 0


def read_record(trial_dir: str | Path) -> dict[str, Any] | None:
    """A trial directory's ``zoo_trial.json`` (None when missing or unreadable)."""
    path = Path(trial_dir) / RECORD
    try:
        return zreport.read_json(path)
    except (OSError, ValueError):
        return None


def read_records(project_dir: str | Path) -> list[dict[str, Any]]:
    """Every trial record of a project, in trial order."""
    recs = [read_record(p) for p in sorted(Path(project_dir).glob("trial_*")) if p.is_dir()]
    return sorted((r for r in recs if r), key=lambda r: (len(str(r["trial_id"])), str(r["trial_id"])))


# ------------------------------------------------------------------------------ keras-tuner
class _UniformFirst:
    """Oracle mixin: propose the queued configurations (``zoo_initial``) before the oracle's own."""

    zoo_initial: Sequence[dict[str, Any]] = ()

    def populate_space(self, trial_id):
        for values in self.zoo_initial:
            if not self._duplicate(values):
                return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": dict(values)}
        return super().populate_space(trial_id)


class _RandomOracle(_UniformFirst, kt.oracles.RandomSearchOracle):
    pass


class _BayesianOracle(_UniformFirst, kt.oracles.BayesianOptimizationOracle):
    pass


def _refuse_run_only_features(recipe: Recipe) -> None:
    """Trials train with :func:`zoo.training.run.compile_model` and ``fit``: the features of a whole
    ``zoo train`` run (distillation, weight averaging) would be silently dropped, so refuse them."""
    t = recipe.train
    used = [f"train.{k}" for k, on in (("teachers", t.teachers), ("swa_start_epoch", t.swa_start_epoch)) if on]
    if used:
        raise TuneError(f"recipe {recipe.name!r} sets {', '.join(used)}: searches train each trial without "
                        "distillation or weight averaging; remove them (the overrides train.teachers=[] "
                        "train.swa_start_epoch=0) and apply them to the chosen configuration with zoo train.")


def _check_oracle_dependencies(kind: str) -> None:
    """keras-tuner's Bayesian oracle needs scipy and scikit-learn (``keras-tuner[bayesian]``)."""
    if kind != "bayesian":
        return
    import importlib.util

    missing = [m for m in ("scipy", "sklearn") if importlib.util.find_spec(m) is None]
    if missing:
        raise TuneError(f"oracle='bayesian' needs {' and '.join(missing).replace('sklearn', 'scikit-learn')} "
                        f"(pip install 'keras-tuner[bayesian]'); use oracle='random' or 'hyperband' without them.")


def _make_oracle(kind: str, space: SearchSpace, *, max_trials: int, seed: int, epochs: int,
                 uniform_first: bool) -> kt.Oracle:
    _check_oracle_dependencies(kind)
    hp = space.hyperparameters()
    common = {"objective": kt.Objective(OBJECTIVE, "max"), "hyperparameters": hp, "allow_new_entries": False,
              "seed": seed + 1,  # keras-tuner takes a seed of 0 as "pick one at random"
              "max_retries_per_trial": 0, "max_consecutive_failed_trials": max_trials + 1}
    if kind == "random":
        oracle = _RandomOracle(max_trials=max_trials, **common)
    elif kind == "bayesian":
        oracle = _BayesianOracle(max_trials=max_trials, **common)
    else:
        oracle = kt.oracles.HyperbandOracle(max_epochs=epochs, factor=3, **common)
        oracle.max_trials = max_trials
    if kind != "hyperband" and uniform_first:
        oracle.zoo_initial = space.uniform_values(hp)
    return oracle


class _quiet_failures:
    """keras-tuner prints a traceback for every failed trial (its ``config.DEBUG`` defaults to True);
    an over-budget trial is not a crash, and real errors are in the trial's record and log."""

    def __enter__(self):
        try:
            from keras_tuner.src import config as kt_config
        except ImportError:  # another keras-tuner layout: keep its default
            self.config = None
            return self
        self.config, self.debug = kt_config, kt_config.DEBUG
        kt_config.DEBUG = False
        return self

    def __exit__(self, *exc):
        if self.config is not None:
            self.config.DEBUG = self.debug
        return False


class _ZooTuner(kt.engine.base_tuner.BaseTuner):
    """Runs a trial through :class:`_Runner`; infeasible, diverged and crashed trials fail (and
    :data:`MAX_CRASHES` crashes in a row stop the search: keras-tuner's own limit is raised above
    ``max_trials`` so that rejections never stop it)."""

    def __init__(self, oracle, *, runner: _Runner, space: SearchSpace, **kwargs):
        self.zoo_runner, self.zoo_space, self.zoo_crashes = runner, space, 0
        super().__init__(oracle=oracle, hypermodel=None, overwrite=False, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        values = dict(trial.hyperparameters.values)
        epochs = values.pop("tuner/epochs", None)
        values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
        space, recipe = self.zoo_space, self.zoo_runner.recipe
        overrides = space.overrides(values) + _epoch_overrides(recipe, epochs)
        info = {"values": values, "label": space.label(values),
                "config": {"downsample": space.downsample(values), "lr": values.get("lr", recipe.optimizer.lr),
                           "weight_decay": values.get("weight_decay", recipe.optimizer.weight_decay),
                           "epochs": int(epochs or recipe.train.epochs)}}
        record = self.zoo_runner.run(trial.trial_id, overrides, info)
        self.zoo_crashes = self.zoo_crashes + 1 if record["status"] == "failed" else 0
        if self.zoo_crashes >= MAX_CRASHES:  # a broken setup, not a bad configuration: stop the search
            raise kt.errors.FatalError(f"{MAX_CRASHES} trials in a row crashed; the last: {record.get('message')} "
                                       f"(see {self.zoo_runner.project_dir}/trial_{trial.trial_id}/). Fix it and "
                                       f"run again with --resume.")
        if record["status"] == "completed":
            return {OBJECTIVE: float(record["val_accuracy"])}
        raise kt.errors.FailedTrialError(f"{record['status']}: {record.get('message', '')}")


# ---------------------------------------------------------------------------- project dirs
@dataclass
class StudyResult:
    """What :func:`tune` and :func:`compare` return."""

    project_dir: Path
    trials: list[dict[str, Any]]
    study: dict[str, Any]
    files: dict[str, Path]

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [t for t in self.trials if t.get("status") == "completed"]

    @property
    def best(self) -> dict[str, Any] | None:
        """The best analysed trial (for Hyperband: among those trained for the full schedule)."""
        best = (self.study.get("best") or {}).get("trial_id")
        return next((t for t in self.trials if str(t["trial_id"]) == best), None)


def _role() -> str:
    """``standalone``, ``chief`` or ``worker`` (keras-tuner's environment variables)."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return "standalone"
    if "KERASTUNER_ORACLE_PORT" not in os.environ or "KERASTUNER_TUNER_ID" not in os.environ:
        raise TuneError("KERASTUNER_ORACLE_IP is set, so this is distributed tuning: set KERASTUNER_ORACLE_PORT "
                        "and KERASTUNER_TUNER_ID too (an ID containing 'chief' for the chief, e.g. tuner0 for workers).")
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def _is_project(path: Path) -> bool:
    return (path / SEARCH).exists() or (path / "oracle.json").exists()


def prepare_project(project_dir: Path, description: Mapping[str, Any], *, resume: bool, overwrite: bool) -> bool:
    """Check (and with ``overwrite`` empty) the project directory, then write ``search.json``.
    Returns whether an existing search is being resumed."""
    if resume and overwrite:
        raise TuneError("pass either --resume (continue the search) or --overwrite (start again), not both.")
    path = Path(project_dir)
    exists = path.is_dir() and any(path.iterdir())
    if exists and not _is_project(path):
        raise TuneError(f"{path} exists and is not a zoo tune project (no {SEARCH}); refusing to use or delete it. "
                        f"Choose another --project-dir.")
    resuming = False
    if exists:
        if overwrite:
            shutil.rmtree(path)
        elif not resume:
            n = len(read_records(path))
            raise ProjectExistsError(
                f"{path} already holds a search ({n} finished trial(s)). Pass --resume to continue it, "
                f"--overwrite to delete it and start again, or choose another --project-dir.")
        else:
            saved = zreport.read_json(path / SEARCH) if (path / SEARCH).exists() else None
            if saved is not None:
                diffs = _differences(saved, description)
                if diffs:
                    raise TuneError(f"cannot resume {path}: it searches something else ({'; '.join(diffs[:6])}). "
                                    f"Pass --overwrite to start again or choose another --project-dir.")
            resuming = True
    path.mkdir(parents=True, exist_ok=True)
    zreport.write_json({**description, "updated": _now()}, path / SEARCH)
    return resuming


def _differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    diffs = []
    try:
        diffs += same_experiment(saved["recipe"], now["recipe"])
    except KeyError:
        diffs.append("the saved search has no recipe")
    for key in ("kind", "space", "oracle", "budget", "seed", "uniform_first", "variants", "latency"):
        a, b = (json.loads(json.dumps(x, default=str)) for x in (saved.get(key), now.get(key)))
        if key == "variants" and _extends(a, b):
            continue
        if a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


def _extends(saved: Any, now: Any) -> bool:
    """Whether a comparison's variants ``now`` keep every saved variant, unchanged and in its place,
    and only add new ones after them (e.g. a second seed or learning rate): resuming runs just those."""
    if not isinstance(saved, dict) or not isinstance(now, dict) or len(now) < len(saved):
        return False
    return list(now.items())[:len(saved)] == list(saved.items())


def _default_project(recipe: Recipe) -> Path:
    return Path(recipe.output.runs_dir) / "tune" / recipe.run_name


def _cheapest(recipe: Recipe, space: SearchSpace, info: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """The configuration of least FLOPs (site by site: every choice keeps the site's output size,
    so the FLOPs of a configuration are the sum of per-site costs) and its cost."""
    hp = space.hyperparameters()
    best = space.complete(hp, {})
    for unit, values in space.searched.items():
        name, costs = space.hp_name(unit), []
        for value in values:
            trial = dict(best, **{name: value})
            if value == "blur":
                trial[f"{name}/filter_size"] = min(BLUR_SIZES)
            trial = space.complete(hp, trial)
            rec = load_recipe(recipe, space.overrides(trial))
            costs.append((_cost(rec, info, None)["flops"], trial))
            keras.backend.clear_session()
        best = min(costs, key=lambda c: c[0])[1]
    return best, space.downsample(best)


def _data_info(recipe: Recipe) -> Any:
    """The recipe's dataset facts; loading it here also fills the decoded-image cache the trial
    processes read. A source that cannot be loaded is a :class:`TuneError` before any training."""
    try:
        return ztrain.load_data(recipe).info
    except Exception as err:
        raise TuneError(f"cannot load the data of recipe {recipe.name!r} (data.source={recipe.data.source!r}): "
                        f"{type(err).__name__}: {err}") from err


def check_budget(recipe: Recipe, space: SearchSpace, budget: Budget, latency: Mapping[str, int]) -> dict[str, Any]:
    """Raise :class:`TuneError` when no configuration of ``space`` can meet ``budget``; returns
    the cheapest configuration's cost."""
    info = _data_info(recipe)
    values, ds = _cheapest(recipe, space, info)
    cost = _cost(load_recipe(recipe, space.overrides(values)), info, latency if budget.latency_ms else None)
    keras.backend.clear_session()
    gc.collect()
    over = budget.violations(cost["flops"], cost.get("latency_ms"))
    if over:
        raise TuneError(f"no configuration of the search space meets the budget: the cheapest one "
                        f"({', '.join(f'{k}={v}' for k, v in ds.items())}) has {'; '.join(over)}. "
                        f"Raise the budget or search other choices.")
    print(f"zoo.tune: budget {budget.as_dict()}: the cheapest configuration has {cost['flops'] / 1e6:.2f} M FLOPs"
          + (f", {cost['latency_ms']:.3f} ms/image" if "latency_ms" in cost else ""), flush=True)
    return {"values": values, "downsample": ds, **cost}


# ------------------------------------------------------------------------------------- tune
def tune(recipe: str | Path | Recipe | Mapping, *, sites: str = "each", choices: Any = None,
         shortcuts: str = "follow", tune_lr: bool = False, tune_wd: bool = False, oracle: str = "random",
         max_trials: int = 10, budget_flops: float | str | None = None, budget_latency_ms: float | None = None,
         project_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
         overrides: Sequence[str] = (), isolate: str = "process", uniform_first: bool = True, seed: int = 0,
         latency_batch: int = 1, latency_repeats: int = 30, verbose: bool = True) -> StudyResult:
    """Search ``recipe``'s downsampling choices with keras-tuner; see the module docstring.

    Every bad input (recipe, site, choice, empty space, impossible budget, existing project) is
    a :class:`TuneError`/``ZooError``/``RecipeError`` before any training. Returns the trials and
    the study (``study.json``); the chief or a standalone search writes the report files."""
    runtime.git_commit()  # the commit at launch is the one the report records
    if oracle not in ORACLES:
        raise TuneError(f"oracle={oracle!r} must be one of {', '.join(ORACLES)}.")
    if isolate not in ISOLATION:
        raise TuneError(f"isolate={isolate!r} must be one of {', '.join(ISOLATION)}.")
    _check_oracle_dependencies(oracle)
    if not isinstance(max_trials, int) or max_trials < 1:
        raise TuneError(f"max_trials must be a positive integer, got {max_trials!r}.")
    if latency_batch < 1 or latency_repeats < 1:
        raise TuneError("latency_batch and latency_repeats must be at least 1.")
    budget = Budget(parse_flops(budget_flops), None if budget_latency_ms is None else float(budget_latency_ms))
    if (budget.flops is not None and budget.flops <= 0) or (budget.latency_ms is not None and budget.latency_ms <= 0):
        raise TuneError(f"budgets must be positive, got {budget.as_dict()}.")
    recipe = load_recipe(recipe, overrides)
    ztrain.validate_recipe(recipe)
    _refuse_run_only_features(recipe)
    if not recipe.data.validation:
        raise TuneError(f"recipe {recipe.name!r} holds out no validation images (data.validation=0); the search "
                        f"objective is val_accuracy: pass e.g. data.validation=2000.")
    space = SearchSpace.create(recipe, sites=sites, choices=choices, shortcuts=shortcuts, tune_lr=tune_lr,
                               tune_wd=tune_wd)
    role = _role()
    project = Path(project_dir) if project_dir else _default_project(recipe)
    latency = {"batch": latency_batch, "repeats": latency_repeats, "warmup": 5}
    description = {"kind": "search", "name": project.name, "recipe": resolve(recipe), "space": space.describe(),
                   "oracle": oracle, "budget": budget.as_dict(), "seed": seed, "uniform_first": uniform_first,
                   "latency": latency, "max_trials": max_trials, "isolate": isolate, "objective": OBJECTIVE}
    size = space.size()
    if size is not None and size < max_trials:
        print(f"zoo.tune: the space has only {size} configurations; the search ends when they are exhausted.",
              flush=True)
    if role != "worker":
        _data_info(recipe)
        if budget:
            check_budget(recipe, space, budget, latency)
        resuming = prepare_project(project, description, resume=resume, overwrite=overwrite)
        print(f"zoo.tune: {'resuming' if resuming else 'starting'} {oracle} search of {space.model} "
              f"({', '.join(f'{u}: {v}' for u, v in space.searched.items())}"
              f"{', lr' if space.lr else ''}{', weight_decay' if space.weight_decay else ''}) -> {project}"
              + (f" as the chief on {os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
                 if role == "chief" else ""), flush=True)
    runner = _Runner(recipe, project, budget=budget, latency=latency, isolate=isolate, verbose=verbose)
    kt_oracle = _make_oracle(oracle, space, max_trials=max_trials, seed=seed, epochs=recipe.train.epochs,
                             uniform_first=uniform_first)
    tuner = _ZooTuner(kt_oracle, runner=runner, space=space, directory=str(project.parent),
                      project_name=project.name)
    try:
        with _quiet_failures():
            tuner.search(verbose=1 if verbose else 0)
    except kt.errors.FatalError as err:
        raise TuneError(str(err)) from err
    from zoo.studies import study as zstudy

    if role == "worker":
        study = zstudy.collect(project)
        return StudyResult(project, study["trials"], study, {})
    files = zstudy.write_report(project)
    study = zreport.read_json(files["json"])
    return StudyResult(project, study["trials"], study, files)


def compare(recipe: str | Path | Recipe | Mapping, variants: Mapping[str, Sequence[str]], *,
            project_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
            overrides: Sequence[str] = (), isolate: str = "process", latency_batch: int = 1,
            latency_repeats: int = 30, verbose: bool = True, name: str | None = None) -> StudyResult:
    """Fixed "trials": train ``recipe`` once per variant (label -> dotted overrides, e.g.
    ``{"ConvPool-CNN-C": ["model.name=convpool_cnn_c"]}``) under equal training (same recipe,
    data and seed), measured like search trials, and write the same study report. Resumable:
    finished variants are kept, and variants added after the saved ones (more seeds or learning
    rates) are all that a resume trains."""
    if not variants:
        raise TuneError("compare needs at least one variant.")
    if isolate not in ISOLATION:
        raise TuneError(f"isolate={isolate!r} must be one of {', '.join(ISOLATION)}.")
    recipe = load_recipe(recipe, overrides)
    if not recipe.data.validation:
        raise TuneError(f"recipe {recipe.name!r} holds out no validation images (data.validation=0).")
    checked = {}
    for label, extra in variants.items():
        rec = load_recipe(recipe, list(extra))
        ztrain.validate_recipe(rec)
        _refuse_run_only_features(rec)
        checked[label] = rec
    project = Path(project_dir) if project_dir else _default_project(recipe).with_name(f"{recipe.run_name}-compare")
    latency = {"batch": latency_batch, "repeats": latency_repeats, "warmup": 5}
    description = {"kind": "fixed", "name": name or project.name, "recipe": resolve(recipe),
                   "variants": {k: list(v) for k, v in variants.items()}, "latency": latency, "isolate": isolate,
                   "objective": OBJECTIVE, "budget": Budget().as_dict(), "oracle": "fixed"}
    prepare_project(project, description, resume=resume, overwrite=overwrite)
    runner = _Runner(recipe, project, budget=Budget(), latency=latency, isolate=isolate, verbose=verbose)
    for i, (label, extra) in enumerate(variants.items()):
        rec = checked[label]
        ds = {k: str(v) for k, v in registry.resolve_plan(rec.model.name, **rec.model.options).choices.items()}
        info = {"values": {"variant": label}, "label": label, "variant": label,
                "config": {"model": rec.model.name, "downsample": ds, "lr": rec.optimizer.lr,
                           "weight_decay": rec.optimizer.weight_decay, "epochs": rec.train.epochs}}
        runner.run(_variant_id(project, i, len(variants)), list(extra), info)
    from zoo.studies import study as zstudy

    files = zstudy.write_report(project)
    study = zreport.read_json(files["json"])
    return StudyResult(project, study["trials"], study, files)


def _variant_id(project: Path, index: int, count: int) -> str:
    """Trial id of a comparison's ``index``-th variant: zero-padded to the count of variants, or the
    id it already has in ``project`` (a comparison extended past 10 variants keeps ``trial_3``)."""
    for width in range(1, len(str(count)) + 1):
        if (project / f"trial_{index:0{width}d}").is_dir():
            return f"{index:0{width}d}"
    return f"{index:0{len(str(count))}d}"


# -------------------------------------------------------------------------------------- CLI
def add_search_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The search options shared by ``zoo tune`` and ``zoo study``."""
    parser.add_argument("--sites", choices=("each", "shared"), default="each",
                        help="one choice per site (each) or one choice for all sites (shared)")
    parser.add_argument("--choices", action="append", metavar="LIST",
                        help="choices for every site (max,avg,conv,blur,s2d; blur5 = blur with filter size 5) or "
                             "SITE=LIST for one site or glob (repeatable; then only the named sites are searched)")
    parser.add_argument("--shortcuts", choices=SHORTCUTS, default="follow",
                        help="shortcut/mirror sites follow their stage (default), are searched, or stay published")
    parser.add_argument("--tune-lr", action="store_true", help="also search the learning rate (log scale, /5..x5)")
    parser.add_argument("--tune-wd", action="store_true", help="also search the weight decay (log scale, /10..x10)")
    parser.add_argument("--oracle", choices=ORACLES, default="random")
    parser.add_argument("--max-trials", type=int, default=10, help="trials in all, rejected ones included")
    parser.add_argument("--budget-flops", help="reject configurations above this many multiply-adds (300M, 1.2G)")
    parser.add_argument("--budget-latency-ms", type=float, help="reject configurations slower than this (ms/image)")
    parser.add_argument("--isolate", choices=ISOLATION, default="process",
                        help="run each trial in a fresh process (default) or in the search process")
    parser.add_argument("--no-uniform-first", dest="uniform_first", action="store_false",
                        help="do not start with the uniform configurations (all-max, all-conv, ...)")
    parser.add_argument("--seed", type=int, default=0, help="the oracle's random seed")
    parser.add_argument("--latency-batch", type=int, default=1)
    parser.add_argument("--latency-repeats", type=int, default=30)
    parser.add_argument("--resume", action="store_true", help="continue the search in the project directory")
    parser.add_argument("--overwrite", action="store_true", help="delete the project directory and start again")
    return parser


def add_tune_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``tune`` arguments, for ``python -m zoo.search.tuner`` and the ``zoo tune`` command."""
    parser.add_argument("recipe", help="recipe YAML path or name in recipes/ (e.g. all_cnn_c-study)")
    parser.add_argument("overrides", nargs="*", help="dotted recipe overrides: train.epochs=3 data.limit=2000")
    parser.add_argument("--project-dir", help="search directory (default runs/tune/<recipe>-<model>)")
    parser.add_argument("--report-only", action="store_true",
                        help="only (re)write the report of the search in --project-dir")
    add_search_options(parser)
    parser.set_defaults(func=tune_from_args)
    return parser


def tune_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`tune` given by parsed search options."""
    names = ("sites", "shortcuts", "tune_lr", "tune_wd", "oracle", "max_trials", "budget_flops", "budget_latency_ms",
             "isolate", "uniform_first", "seed", "latency_batch", "latency_repeats", "resume", "overwrite")
    return {"choices": parse_choices(args.choices), **{name: getattr(args, name) for name in names}}


def tune_from_args(args: argparse.Namespace) -> int:
    """Run a search from parsed arguments; 0 on success, 1 for bad input."""
    try:
        if args.report_only:
            from zoo.studies import study as zstudy

            if not args.project_dir:
                raise TuneError("--report-only needs --project-dir.")
            files = zstudy.write_report(args.project_dir)
            print(f"zoo tune: report {files['markdown']}")
            return 0
        result = tune(args.recipe, overrides=args.overrides, project_dir=args.project_dir, **tune_options(args))
    except (TuneError, RecipeError, ZooError, FileNotFoundError) as err:
        print(f"zoo tune: error: {err}", file=sys.stderr)
        return 1
    best = result.best
    done = "; best " + (f"trial {best['trial_id']} ({best['label']}) val_accuracy {best['val_accuracy']:.4f}"
                        if best else "none")
    print(f"zoo tune: {len(result.completed)} of {len(result.trials)} trials completed{done}; "
          f"{'report ' + str(result.files['markdown']) if result.files else 'worker done'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zoo.search.tuner RECIPE [overrides...] [options]`` (``_trial SPEC`` runs one trial)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_trial"]:
        return _child_main(argv[1])
    parser = add_tune_arguments(argparse.ArgumentParser(prog="python -m zoo.search.tuner", description=__doc__,
                                                        formatter_class=argparse.RawDescriptionHelpFormatter))
    return tune_from_args(parse_args_with_overrides(parser, argv))


if __name__ == "__main__":
    sys.exit(main())

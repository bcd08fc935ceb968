"""The search space of a recipe's model: which downsampling sites are searched over which choices.

``sites="each"`` (default): one ``hp.Choice("ds/<site>")`` per searched site; ``sites="shared"``:
one ``hp.Choice("ds/all")`` applied to every searched site. ``choices`` is a list for every site
(default :data:`DEFAULT_CHOICES`) or a mapping ``{site or glob: [choices]}``; only the sites it
names are then searched and the rest keep the recipe's choice. ``"blur"`` searches the blur filter
size too, as a conditional ``hp.Int("ds/<site>/filter_size", 2, 7)`` that exists only while that
site's choice is blur (``hp.conditional_scope``); ``"blur5"`` is blur with a fixed filter size.
``"none"`` (no downsampling: the network's total stride changes) is never searched unless listed.
Sites whose recipe choice is ``none`` (the CIFAR stems of ResNet-ImageNet, SqueezeNet, FishNet) are
not searched unless a mapping names them. ``tune_lr``/``tune_wd`` add ``hp.Float`` ``lr`` (log
scale, recipe's rate / 5 .. x 5) and ``weight_decay`` (recipe's / 10 .. x 10; 1e-5 .. 1e-3 when
the recipe has none).

Shortcut and mirror sites (a ResNet shortcut, a FishNet head pool) mirror a main site's
resolution. ``shortcuts="follow"`` (default) gives them their main site's choice (stage ``max`` ->
max-pool then 1x1 projection; ``avg`` is ResNet-D, He et al. 2019 §4.1; ``conv`` is the published
1x1 stride-2 projection), so a trial changes a whole stage transition at once. ``"search"`` gives
each its own choice (``sites="each"`` only); ``"published"`` keeps the recipe's.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras_tuner as kt
import yaml

from zoo.layers.downsample import CHOICE_OPTIONS, Choice, Site
from zoo.models import registry
from zoo.search.errors import TuneError
from zoo.search.sites import SiteRequest, requested_choices, resolve_sites
from zoo.training import Recipe

__all__ = ["DEFAULT_CHOICES", "SHARED", "SHORTCUTS", "SearchSpace", "flow", "parse_choices"]

DEFAULT_CHOICES: tuple[str, ...] = ("max", "avg", "conv", "blur", "s2d")
SHORTCUTS = ("follow", "search", "published")
SHARED = "all"  # the site name of the one shared choice
LR_FACTOR = 5.0  # lr searched in [lr / 5, lr * 5], log scale
WD_FACTOR = 10.0  # weight decay searched in [wd / 10, wd * 10], log scale
WD_DEFAULT_RANGE = (1e-5, 1e-3)
BLUR_SIZES: tuple[int, ...] = CHOICE_OPTIONS["blur"]["filter_size"]


def flow(value: Any) -> str:
    """A value as one-line YAML, for a dotted override."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip().removesuffix("...").strip()


def parse_choices(items: Sequence[str] | None) -> list[str] | dict[str, list[str]] | None:
    """Command-line ``--choices`` values -> what :func:`zoo.search.tune` takes.

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


def canonical(text: Any, where: str) -> str:
    """A choice as the hyperparameter value: ``max``, ..., ``blur`` (filter size searched) or
    ``blurN`` (fixed filter size)."""
    choice = Choice.parse(text, where)
    if choice.kind == "blur" and not (isinstance(text, str) and text.strip().lower() == "blur"):
        return f"blur{choice.filter_size}"
    return choice.kind


def spec(value: str, filter_size: int | None) -> str:
    """Hyperparameter value (+ filter size) -> the ``downsample`` spec string."""
    if value == "blur":
        return str(Choice("blur", int(filter_size or 3)))
    return str(Choice.parse(value))


def _check_modes(sites: str, shortcuts: str) -> None:
    if sites not in ("each", "shared"):
        raise TuneError(f"sites={sites!r} must be 'each' (one choice per site) or 'shared' (one for all).")
    if shortcuts not in SHORTCUTS:
        raise TuneError(f"shortcuts={shortcuts!r} must be one of {', '.join(SHORTCUTS)}.")
    if sites == "shared" and shortcuts == "search":
        raise TuneError("shortcuts='search' gives each shortcut its own choice: it needs sites='each'.")


def _ranges(recipe: Recipe, tune_lr: bool, tune_wd: bool) -> tuple[tuple | None, tuple | None]:
    """``(low, high, default)`` of the searched learning rate and weight decay (None: not searched)."""
    lr = wd_range = None
    if tune_lr:
        rate = recipe.optimizer.lr
        lr = (rate / LR_FACTOR, rate * LR_FACTOR, rate)
    if tune_wd:
        wd = recipe.optimizer.weight_decay
        wd_range = ((wd / WD_FACTOR, wd * WD_FACTOR, wd) if wd > 0
                    else (*WD_DEFAULT_RANGE, math.sqrt(WD_DEFAULT_RANGE[0] * WD_DEFAULT_RANGE[1])))
    return lr, wd_range


@dataclass
class SearchSpace:
    """The search space of one recipe's model (see the module docstring).

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

    @classmethod
    def create(cls, recipe: Recipe, *, sites: str = "each", choices: Any = None, shortcuts: str = "follow",
               tune_lr: bool = False, tune_wd: bool = False) -> SearchSpace:
        """Derive the space from ``recipe``'s model; raises :class:`TuneError`/``ZooError`` for an
        unknown site or choice and an empty space."""
        _check_modes(sites, shortcuts)
        name, options = recipe.model.name, dict(recipe.model.options)
        all_sites = registry.sites(name, **options)
        if not all_sites:
            raise TuneError(f"{name} has no downsampling sites: there is nothing to search.")
        plan = registry.resolve_plan(name, **options)
        request = SiteRequest(name, all_sites, {s.name: str(plan.choices[s.name]) for s in all_sites}, shortcuts)
        per_site = resolve_sites(request, requested_choices(choices, DEFAULT_CHOICES), canonical,
                                 explicit=choices is not None)
        base = dict(request.base)
        for site, values in list(per_site.items()):  # single-choice sites are fixed, not searched
            if len(values) == 1 and values[0] != "blur":  # a lone 'blur' still searches its filter size
                base[site] = spec(values[0], None)
                del per_site[site]
        space = cls(model=name, sites=all_sites, base=base, mode=sites, shortcuts=shortcuts, searched={})
        space._assign(per_site, request)
        space.lr, space.weight_decay = _ranges(recipe, tune_lr, tune_wd)
        space._check_not_empty(request)
        return space

    def _assign(self, per_site: dict[str, list[str]], request: SiteRequest) -> None:
        """Set the searched units (per site, or one shared unit) and the followers."""
        if self.mode == "shared":
            lists = {tuple(v) for v in per_site.values()}
            if len(lists) > 1:
                raise TuneError("sites='shared' searches one choice for every site, so every site needs the same "
                                f"choices; got {', '.join(f'{k}: {v}' for k, v in per_site.items())}.")
            if per_site:
                self.searched = {SHARED: list(next(iter(lists)))}
                self.shared_sites = [n for n in per_site if n not in request.followers]
        else:
            self.searched = dict(per_site)
        if self.shortcuts == "follow":  # followers of every searched or fixed-by-choices main site
            self.followers = {f: m for f, m in request.followers.items() if m in request.requested_main}

    def _check_not_empty(self, request: SiteRequest) -> None:
        if any(len(v) > 1 or v == ["blur"] for v in self.searched.values()) or self.lr or self.weight_decay:
            return
        fixed = ", ".join(f"{k}={v}" for k, v in self.downsample({}).items() if k in request.requested_main) or "none"
        raise TuneError(f"the search space of {self.model} is empty: every searched site has a single choice "
                        f"({fixed}) and neither lr nor weight decay is tuned. Give at least two choices for a site.")

    # ......................................................................... keras-tuner
    def hp_name(self, unit: str) -> str:
        return f"ds/{unit}"

    def declare(self, hp: kt.HyperParameters) -> kt.HyperParameters:
        """Declare the space's hyperparameters (conditional filter sizes included) in ``hp``."""
        by_name = {s.name: s for s in self.sites}
        for unit, values in self.searched.items():
            parent = by_name.get(unit)
            main_hp = self.hp_name(parent.follows) if parent is not None and parent.follows else None
            main_values = self.searched.get(parent.follows) if main_hp else None
            if main_values and "none" in main_values:  # a searched follower exists only while its main downsamples
                with hp.conditional_scope(main_hp, [v for v in main_values if v != "none"]):
                    self._declare_unit(hp, unit, values)
            else:
                self._declare_unit(hp, unit, values)
        if self.lr:
            hp.Float("lr", self.lr[0], self.lr[1], sampling="log", default=self.lr[2])
        if self.weight_decay:
            hp.Float("weight_decay", self.weight_decay[0], self.weight_decay[1], sampling="log",
                     default=self.weight_decay[2])
        return hp

    def _declare_unit(self, hp: kt.HyperParameters, unit: str, values: list[str]) -> None:
        name = self.hp_name(unit)
        base = canonical(self.base.get(unit, values[0]), "") if unit in self.base else values[0]
        hp.Choice(name, values, default=base if base in values else values[0])
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
            choice = spec(values[name], values.get(f"{name}/filter_size"))
            for site in (self.shared_sites if unit == SHARED else [unit]):
                ds[site] = choice
        for follower, main in self.followers.items():
            ds[follower] = ds[main]
        return ds

    def overrides(self, values: Mapping[str, Any]) -> list[str]:
        """Dotted recipe overrides that turn the base recipe into this trial's recipe."""
        out = [f"model.downsample={flow(self.downsample(values))}"]
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
                hps.values[p.name] = wanted.get(p.name, p.default)
        return dict(hps.values)

    def uniform_values(self, hp: kt.HyperParameters) -> list[dict[str, Any]]:
        """One configuration per choice with every searched site set to it (where allowed)."""
        order = list(dict.fromkeys(v for values in self.searched.values() for v in values))
        out = []
        for value in order:
            config = self.complete(hp, {self.hp_name(u): value for u, vals in self.searched.items() if value in vals})
            if config not in out:
                out.append(config)
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (``search.json``, the report)."""
        rows = []
        for s in self.sites:
            unit = SHARED if s.name in self.shared_sites else s.name
            rule = (("follows " + self.followers[s.name]) if s.name in self.followers else
                    ("searched" if unit in self.searched else "fixed"))
            rows.append({"site": s.name, "role": s.role, "published": s.default, "base": self.base[s.name],
                         "follows": s.follows, "choices": self.searched.get(unit) if unit in self.searched else None,
                         "shared": s.name in self.shared_sites, "rule": rule})
        return {"model": self.model, "mode": self.mode, "shortcuts": self.shortcuts, "units": self.units(),
                "sites": rows, "lr": list(self.lr) if self.lr else None,
                "weight_decay": list(self.weight_decay) if self.weight_decay else None, "size": self.size()}

    def label(self, values: Mapping[str, Any]) -> str:
        """A short description of a configuration: ``pool1=max pool2=blur5 lr=0.05``."""
        ds = self.downsample(values)
        parts = [f"{u}={ds[self.shared_sites[0]] if u == SHARED else ds[u]}" for u in self.searched]
        parts += [f"{k}={float(values[k]):.3g}" for k in ("lr", "weight_decay") if k in values]
        return " ".join(parts)

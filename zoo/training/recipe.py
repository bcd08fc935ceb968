"""Training recipes: configurations as data (the schema is :mod:`zoo.training.schema`).

:func:`load_recipe` reads a recipe from a path or a name resolved in the top-level ``recipes/``
folder, follows ``extends:`` (a budget recipe inherits a paper recipe and changes a few fields),
applies dotted command-line overrides such as ``optimizer.lr=0.05 train.epochs=3
model.downsample=max`` (values are YAML-typed) and validates every field by name and type.
:func:`resolve` turns a recipe back into the plain dict that a run directory saves as
``recipe.yaml``; loading that file gives the same recipe.

Model options are passed through untouched and checked by :func:`zoo.models.registry.build`
(through :func:`zoo.training.capabilities.validate_recipe`) when the model is built.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from zoo.errors import did_you_mean
from zoo.training.schema import (COSMETIC, check_values, SECTIONS, TOP_LEVEL, DataSection, ModelSection,
                                 OptimizerSection, OutputSection, Recipe, RecipeError, ScheduleSection,
                                 TrainSection)

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
    "lookahead_settings",
    "load_recipe",
    "parse_override",
    "recipe_dirs",
    "resolve",
    "same_experiment",
]


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
    hint = did_you_mean(path.stem, known)
    raise RecipeError(
        f"no recipe {str(name)!r}: not a file and not in {', '.join(map(str, recipe_dirs())) or 'any recipes/ folder'}."
        f"{hint} Known recipes: {', '.join(known) or 'none'}."
    )


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
    check_values(recipe)
    lookahead_settings(recipe)  # train.lookahead: its keys and values
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
    where = f"{section}.{key}" if section else key
    scope = f"section {section!r}" if section else "a recipe (top level)"
    hint = did_you_mean(where, [f"{section}.{v}" if section else v for v in valid], n=1)
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


LOOKAHEAD_DEFAULTS = {"every": 5, "base": 0.95 ** 5, "power": 3.0}  # airbench94 (Jordan 2024 §3.6)


def lookahead_settings(recipe: Recipe) -> dict[str, Any] | None:
    """``train.lookahead`` with its defaults filled in (``None``: off); raises :class:`RecipeError`
    on an unknown key or an impossible value."""
    given = recipe.train.lookahead
    if given is None:
        return None
    unknown = sorted(set(given) - set(LOOKAHEAD_DEFAULTS))
    if unknown:
        raise RecipeError(f"train.lookahead: unknown key(s) {', '.join(map(str, unknown))}; valid: every, base, power "
                          f"(e.g. {{every: 5, base: 0.774, power: 3}}).")
    out = {**LOOKAHEAD_DEFAULTS, **given}
    every, base, power = out["every"], out["base"], out["power"]
    if not (isinstance(every, int) and not isinstance(every, bool) and every >= 1):
        raise RecipeError(f"train.lookahead.every={every!r} must be a whole number of steps >= 1.")
    for key, value in (("base", base), ("power", power)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"train.lookahead.{key}={value!r} must be a number.")
    if not (0 <= base < 1 and power >= 0):
        raise RecipeError(f"train.lookahead: base={base!r} must be in [0, 1) and power={power!r} >= 0.")
    return {"every": every, "base": float(base), "power": float(power)}


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

"""Which downsampling sites a search covers, and over which choices (for :class:`zoo.search.SearchSpace`).

``choices`` names every site (a list: the sites that downsample in the recipe, see
:func:`default_units`) or some sites (a mapping of site names or globs to lists). A follower site
(a ResNet shortcut, a FishNet head pool) is searched on its own only with ``shortcuts="search"``.
"""
from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import unknown
from zoo.layers.downsample import Choice, Site
from zoo.search.errors import TuneError


@dataclass
class SiteRequest:
    """A model's sites as a search sees them: ``base`` is each site's choice in the recipe."""

    model: str
    sites: list[Site]
    base: dict[str, str]
    shortcuts: str
    requested_main: list[str] = field(default_factory=list)  # main sites the choices named (set by resolve_sites)

    @property
    def by_name(self) -> dict[str, Site]:
        return {s.name: s for s in self.sites}

    @property
    def main(self) -> list[str]:
        return [s.name for s in self.sites if s.follows is None]

    @property
    def followers(self) -> dict[str, str]:
        """Follower site -> the main site it mirrors."""
        return {s.name: s.follows for s in self.sites if s.follows is not None}

    def downsamples(self, site: str) -> bool:
        return Choice.parse(self.base[site]).kind != "none"


def requested_choices(choices: Any, default: Sequence[str]) -> dict[str, list[str]]:
    """``choices`` (None, ``"a,b"``, a list, or a mapping site/glob -> list or ``"a,b"``) as a
    mapping pattern -> list, ``"*"`` standing for every default site."""
    if choices is None:
        return {"*": list(default)}
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


def default_units(request: SiteRequest) -> list[str]:
    """The sites a list of choices applies to: main sites that downsample in the recipe (and,
    with ``shortcuts="search"``, the followers of those)."""
    units = [n for n in request.main if request.downsamples(n)]
    if request.shortcuts == "search":
        units += [f for f, m in request.followers.items() if request.downsamples(m)]
    return units


def _matched(request: SiteRequest, pattern: str, defaults: list[str]) -> list[str]:
    """The sites ``pattern`` names (``"*"``: the default units), followers only where searchable."""
    if pattern == "*":
        return defaults
    by_name = request.by_name
    matched = [n for n in by_name if fnmatch.fnmatchcase(n, pattern)]
    if not matched:
        raise unknown(f"downsampling site of {request.model}", pattern, by_name,
                      hint=f"See `zoo info {request.model}` for its sites.")
    bad = [n for n in matched if n in request.followers and request.shortcuts != "search"]
    if bad and len(bad) == len(matched):
        main = by_name[bad[0]].follows
        raise TuneError(f"site {bad[0]!r} of {request.model} follows {main!r} (shortcuts={request.shortcuts!r}); "
                        f"search {main!r} instead or pass shortcuts='search'.")
    return [n for n in matched if n not in bad]


def _site_choices(request: SiteRequest, site: str, values: Sequence[Any],
                  canonical: Callable[[Any, str], str]) -> list[str]:
    where = f" (site {site!r} of {request.model})"
    canon = list(dict.fromkeys(canonical(v, where) for v in values))
    if not canon:
        raise TuneError(f"no choices for site {site!r} of {request.model}: the search space is empty.")
    if site in request.followers and "none" in canon:
        raise TuneError(f"site {site!r} of {request.model} follows {request.followers[site]!r} and cannot be "
                        f"'none' while that site downsamples; drop 'none' from its choices.")
    return canon


def resolve_sites(request: SiteRequest, requested: Mapping[str, Sequence[Any]],
                  canonical: Callable[[Any, str], str], *, explicit: bool) -> dict[str, list[str]]:
    """Site -> its canonical choices, for every site ``requested`` names; sets
    ``request.requested_main``. ``explicit``: the caller named the choices (else the defaults)."""
    defaults = default_units(request)
    if not defaults and not explicit:
        raise TuneError(f"{request.model} with these options downsamples nowhere (every site is 'none'): nothing "
                        f"to search. Name sites explicitly, e.g. choices={{'{request.main[0]}': ['max', 'conv']}}.")
    per_site: dict[str, list[str]] = {}
    for pattern, values in requested.items():
        for site in _matched(request, pattern, defaults):
            per_site[site] = _site_choices(request, site, values, canonical)
    request.requested_main = [n for n in request.main if n in per_site]
    return per_site

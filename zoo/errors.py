"""Errors raised by the zoo. Every message names the problem and what is allowed."""
from __future__ import annotations

import difflib
from typing import Iterable


class ZooError(ValueError):
    """A bad request to the zoo: unknown name, option, site or choice, or an impossible shape."""


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``word`` (difflib ratio), best first."""
    return difflib.get_close_matches(str(word), list(candidates), n=n, cutoff=0.5)


def unknown(kind: str, word: object, candidates: Iterable[str], hint: str = "") -> ZooError:
    """A ZooError for an unknown ``kind`` named ``word``, with close matches and the valid values."""
    candidates = sorted(candidates)
    msg = f"unknown {kind} {word!r}."
    near = close_matches(str(word), candidates)
    if near:
        msg += f" Did you mean {', '.join(repr(n) for n in near)}?"
    shown = ", ".join(candidates[:40]) + (" ..." if len(candidates) > 40 else "")
    msg += f" Valid: {shown}."
    if hint:
        msg += f" {hint}"
    return ZooError(msg)

"""The zoo's one error hierarchy and its one "did you mean" helper.

Every error a user can cause is a :class:`ZooError`; its message names the problem and the fix in
one line, and ``exit_code`` is what the ``zoo`` command exits with (:mod:`zoo.cli`): 2 for bad
input, 1 for a run that started and failed. Nothing here imports Keras or TensorFlow.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class ZooError(ValueError):
    """A bad request to the zoo: unknown name, option, site or choice, bad data, an impossible shape."""

    exit_code = 2


class RunFailedError(ZooError):
    """A run that started and could not finish (diverged, crashed trial, lost worker)."""

    exit_code = 1


def close_matches(word: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to ``word`` (difflib ratio), best first."""
    return difflib.get_close_matches(str(word), list(candidates), n=n, cutoff=0.5)


def did_you_mean(word: object, candidates: Iterable[str], n: int = 3) -> str:
    """``" Did you mean 'a', 'b'?"`` for the candidates close to ``word``, or ``""``."""
    near = close_matches(str(word), candidates, n)
    return f" Did you mean {', '.join(repr(w) for w in near)}?" if near else ""


def unknown(kind: str, word: object, candidates: Iterable[str], hint: str = "") -> ZooError:
    """A ZooError for an unknown ``kind`` named ``word``, with close matches and the valid values."""
    candidates = sorted(candidates)
    shown = ", ".join(candidates[:40]) + (" ..." if len(candidates) > 40 else "")
    msg = f"unknown {kind} {word!r}.{did_you_mean(word, candidates)} Valid: {shown}."
    return ZooError(f"{msg} {hint}" if hint else msg)

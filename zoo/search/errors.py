"""The search's errors, all :class:`zoo.errors.ZooError` subclasses (one exit-code rule, :mod:`zoo.cli`)."""
from __future__ import annotations

from zoo.errors import RunFailedError, ZooError


class TuneError(ZooError):
    """A search that cannot start: bad space, budget, project directory or option (exit 2)."""


class ProjectExistsError(TuneError):
    """The project directory already holds a search and neither resume nor overwrite was asked."""


class SearchFailedError(RunFailedError):
    """A search that started and stopped: several trials in a row crashed (exit 1)."""

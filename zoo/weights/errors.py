"""The weights package's errors: every one a :class:`zoo.errors.ZooError` (a bad request, exit code 2)."""
from __future__ import annotations

from zoo.errors import ZooError


class WeightsError(ZooError):
    """A weights request that cannot be served: unknown name or tag, missing or mismatched file."""


class ChecksumError(WeightsError):
    """A file's sha256 is not the one the manifest publishes."""


class WeightsNotFound(WeightsError):
    """The file is neither packaged, nor cached, nor downloadable (offline, or no URL)."""


class DownloadError(WeightsError):
    """A download failed (network, HTTP status, truncated transfer)."""

"""The CIFAR-10 sample that ships inside the package (the offline default dataset).

``zoo/data/embedded/cifar10-sample.tar.gz`` holds the first 300 images per
class (by file name) of the CIFAR-10 training split (Krizhevsky 2009) as
JPEGs laid out ``train/<class>/NNNN.jpg``. It is made by
:func:`make_embedded_sample`; ``zoo/data/embedded/SOURCE.md`` records the
command and the sha256.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.resources
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

SAMPLE_NAME = "cifar10-sample"
SAMPLE_FILE = "cifar10-sample.tar.gz"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@contextlib.contextmanager
def embedded_sample_path() -> Iterator[Path]:
    """Yield a filesystem path to the packaged sample archive."""
    resource = importlib.resources.files(__package__) / "embedded" / SAMPLE_FILE
    with importlib.resources.as_file(resource) as path:
        if not path.is_file():
            raise FileNotFoundError(f"the packaged sample {path} is missing; reinstall zoo")
        yield path


def make_embedded_sample(
    archive: str | Path, out: str | Path, per_class: int = 300
) -> str:
    """Write the first ``per_class`` images of each class of ``archive`` to ``out``.

    ``archive`` is a tar archive laid out ``[<root>/]<class>/<image>``;
    images are chosen by sorted file name and copied byte for byte (no
    re-encoding) to ``train/<class>/<file>`` in ``out``. The output is
    reproducible: members are sorted and all tar and gzip timestamps and
    owners are zeroed. Returns the sha256 of ``out``.
    """
    chosen = _first_per_class(Path(archive), per_class)
    with open(out, "wb") as raw, gzip.GzipFile(
        filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9
    ) as zipped, tarfile.open(fileobj=zipped, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in chosen:
            tar.addfile(_reproducible_member(name, len(data)), io.BytesIO(data))
    return hashlib.sha256(Path(out).read_bytes()).hexdigest()


def _first_per_class(archive: Path, per_class: int) -> list[tuple[str, bytes]]:
    """Sorted ``(train/<class>/<file>, bytes)`` of the first ``per_class`` files of each class."""
    with tarfile.open(archive, mode="r:*") as tar:
        members = [
            m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(_IMAGE_SUFFIXES)
        ]
        by_class: dict[str, list[str]] = {}
        for member in members:
            path = PurePosixPath(member.name)
            by_class.setdefault(path.parent.name, []).append(path.name)
        wanted = {(cls, name) for cls, names in by_class.items() for name in sorted(names)[:per_class]}
        # Read in archive order so a compressed stream is never rewound.
        chosen = []
        for member in members:
            path = PurePosixPath(member.name)
            if (path.parent.name, path.name) in wanted:
                data = tar.extractfile(member).read()
                chosen.append((f"train/{path.parent.name}/{path.name}", data))
    return sorted(chosen)


def _reproducible_member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info

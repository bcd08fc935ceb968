"""The weights shipped inside the package (``zoo/weights/manifest.json``): every file's sha256,
the size limits, and that each entry loads by name into a model that classifies real images.

The images are the packaged CIFAR-10 sample, which is taken from the same training archive as
the weights' training split (mostly from its training part), so its accuracy checks that the
weights, the preprocessing and the build options load together correctly; it is not a held-out
measure (that is the entry's ``metrics``, from the run that produced the weights).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from zoo.data import embedded_sample_path
from zoo.data.folder import read_image_folder
from zoo.weights import load_weights, weights_info
from zoo.weights.entries import MANIFEST, read_manifest

PACKAGED = read_manifest(MANIFEST)
FILE_LIMIT = 20 * 10**6  # no committed file over 20 MB
TOTAL_LIMIT = 100 * 10**6  # all shipped weights together under 100 MB


def _ids(entries) -> list[str]:
    return [e.key for e in entries]


@pytest.fixture(scope="module")
def sample():
    with embedded_sample_path() as path:
        data = read_image_folder(path)
    picked = np.concatenate([np.flatnonzero(data.labels == c)[:50] for c in range(len(data.class_names))])
    return data.images[picked].astype("float32"), data.labels[picked], data.class_names


def test_the_package_ships_the_cifar10_weights_the_zoo_promises():
    keys = {e.key for e in PACKAGED}
    assert {"resnet20:cifar10", "resnet56:cifar10", "all_cnn_c:cifar10", "squeezenet1_1:cifar10", "fishnet99:cifar10"} <= keys


@pytest.mark.parametrize("entry", PACKAGED, ids=_ids(PACKAGED))
def test_every_packaged_file_matches_its_sha256_and_size_limits(entry):
    files = entry.packaged_files()
    assert files and all(p.exists() for p in files), f"{entry.key}: missing {files}"
    whole = hashlib.sha256()
    for i, path in enumerate(files):
        data = path.read_bytes()
        assert len(data) < FILE_LIMIT, f"{path.name} is over 20 MB: publish it again (it is sharded then)"
        if entry.shards:
            assert hashlib.sha256(data).hexdigest() == entry.shards[i]["sha256"], path.name
            assert len(data) == entry.shards[i]["size"]
        whole.update(data)
    assert whole.hexdigest() == entry.sha256
    assert sum(p.stat().st_size for p in files) == entry.size


def test_zoo_weights_lists_each_entry_on_one_line_of_80_columns(capsys):
    from zoo.cli import main

    assert main(["weights"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 80 and not any("He et al." in line for line in lines)  # no descriptions
    for e in PACKAGED:
        row = next(line for line in lines if line.split()[:2] == [e.name, e.tag])
        accuracy = e.metrics["holdout"]["accuracy"] if "holdout" in e.metrics else None
        if accuracy is not None:
            assert f"{100 * accuracy:.2f}% holdout" in row and e.sha256[:8] in row
    assert main(["weights", "resnet20"]) == 0
    out = capsys.readouterr().out
    assert "resnet20:cifar10" in out and "resnet56" not in out and "ResNet-20" in out  # the description
    assert main(["weights", "--long"]) == 0
    out = capsys.readouterr().out
    assert all(f"{e.name}:{e.tag}" in out for e in PACKAGED) and "He et al." in out  # every description


def test_all_packaged_weights_stay_under_100_mb():
    assert sum(e.size for e in PACKAGED) < TOTAL_LIMIT


@pytest.mark.parametrize("entry", [e for e in PACKAGED if e.tag == "cifar10"],
                         ids=_ids([e for e in PACKAGED if e.tag == "cifar10"]))
def test_each_packaged_cifar10_model_loads_by_name_and_classifies_real_images(entry, sample, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # shards are joined into an empty cache
    images, labels, class_names = sample
    model = load_weights(entry.name, entry.tag, offline=True, include_preprocessing=True)  # raw 0..255 RGB
    assert tuple(weights_info(entry.name, entry.tag)["classes"]) == tuple(class_names)
    accuracy = float(np.mean(np.argmax(model.predict(images, batch_size=100, verbose=0), -1) == labels))
    held_out = entry.metrics["holdout"]["accuracy"]
    assert accuracy >= held_out - 0.1, f"{entry.key}: {accuracy:.3f} on the sample, {held_out:.3f} published"

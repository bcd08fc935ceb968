"""The weights registry: publish, hash-verified loading by name, cache, downloads, offline mode.

No trained weights are published yet, so a module fixture makes a tiny *run directory* the way
``zoo train`` leaves one (an inference model raw RGB → fitted per-channel Normalization → resnet20,
its ``model.weights.h5``, ``model.keras`` and ``report.json``) and every test publishes from it into
a temporary manifest (``ZOO_WEIGHTS_MANIFEST``) with a temporary cache (``KERAS_HOME``).
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from zoo.errors import ZooError
from zoo.weights import (ChecksumError, WeightsError, WeightsNotFound, check_weights, get_weights, list_weights,
                         load_weights, publish, publish_file, weights_info, weights_table)
from zoo.weights import store
from zoo.weights.runs import run_facts

INPUT = (32, 32, 3)


def _rgb(batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, *INPUT)).astype("float32")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished-looking `zoo train` run of resnet20 on a 'cifar10' with random weights."""
    run = tmp_path_factory.mktemp("runs") / "resnet20-tiny"
    run.mkdir()
    rng = np.random.default_rng(0)
    net = zoo.build("resnet20", num_classes=10, input_shape=INPUT)
    for layer in net.layers:  # non-trivial BN statistics, so that wrong loading shows
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 1.5, layer.moving_variance.shape).astype("float32"))
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(rng.uniform(0, 255, (64, *INPUT)).astype("float32"))
    inputs = keras.Input(shape=INPUT, name="rgb")
    model = keras.Model(inputs, net(norm(inputs)), name="resnet20_inference")
    model.save_weights(run / "model.weights.h5")
    model.save(run / "model.keras")
    report = {
        "run_name": run.name, "status": "completed",
        "model": {"name": "resnet20", "options": {}, "input_shape": list(INPUT)},
        "data": {"name": "cifar10", "num_classes": 10, "num_train": 45000, "num_validation": 5000},
        "evaluation": {"holdout": {"accuracy": 0.1, "loss": 2.3}, "test": {"accuracy": 0.1, "loss": 2.3}},
        "best": {"epoch": 1, "val_accuracy": 0.1},
        "recipe": {"name": "resnet20-tiny", "data": {"normalization": "per_channel"}},
    }
    (run / "report.json").write_text(json.dumps(report))
    np.save(run / "expected.npy", model(_rgb(), training=False).numpy())
    return run


@pytest.fixture
def env(tmp_path, monkeypatch) -> dict[str, Path]:
    """A temporary manifest (with its files/ folder) and an empty cache; online."""
    manifest = tmp_path / "pkg" / "manifest.json"
    monkeypatch.setenv("ZOO_WEIGHTS_MANIFEST", str(manifest))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.delenv("ZOO_OFFLINE", raising=False)
    return {"manifest": manifest, "cache": tmp_path / "keras_home" / "zoo" / "weights", "tmp": tmp_path}


def _expected(run_dir: Path) -> np.ndarray:
    return np.load(run_dir / "expected.npy")


# ------------------------------------------------------------------------------ round trip
def test_publish_then_load_by_name_round_trip(run_dir, env):
    entry = publish(run_dir, "cifar10", manifest=env["manifest"], description="tiny test weights")
    assert entry.file == f"files/resnet20-cifar10-{entry.sha256[:8]}.weights.h5"
    assert (env["manifest"].parent / entry.file).exists()
    assert entry.sha256 == hashlib.sha256((env["manifest"].parent / entry.file).read_bytes()).hexdigest()
    assert entry.build == {"num_classes": 10, "input_shape": [32, 32, 3]}
    assert entry.classes[0] == "airplane" and len(entry.classes) == 10
    assert entry.preprocessing["layer"]["class_name"] == "Normalization"
    assert entry.metrics["test"]["accuracy"] == 0.1 and entry.recipe["name"] == "resnet20-tiny"
    on_disk = json.loads(env["manifest"].read_text())
    assert on_disk["format"] == 1 and on_disk["weights"][0]["sha256"] == entry.sha256

    model = load_weights("resnet20", weights="cifar10", include_preprocessing=True)
    np.testing.assert_allclose(model(_rgb(), training=False).numpy(), _expected(run_dir), atol=1e-5)
    info = weights_info("resnet20", "cifar10")
    assert info["tag"] == "cifar10" and info["classes"][9] == "truck" and info["kind"] == "tag"
    keys = [w.key for w in list_weights("resnet20")]  # the packaged manifest's tags come along
    assert "resnet20:cifar10" in keys and all(k.startswith("resnet20:") for k in keys)
    from zoo.weights import build  # the hook behind zoo.build(name, weights=...)

    assert build("resnet20", weights="cifar10", include_preprocessing=False).name == "resnet20"
    assert build("resnet20").name == "resnet20"
    row = weights_table("resnet20")[0]
    assert row["where"] == "local" and row["metric"].endswith("% test")


def test_float16_publication_halves_the_file_and_stays_close(run_dir, env):
    full = publish(run_dir, "cifar10", manifest=env["manifest"])
    half = publish(run_dir, "cifar10-fp16", dtype="float16", manifest=env["manifest"])
    assert half.dtype == "float16" and half.size < 0.7 * full.size
    out = load_weights("resnet20", "cifar10-fp16", include_preprocessing=True)(_rgb(), training=False).numpy()
    assert np.abs(out - _expected(run_dir)).max() < 2e-2 * max(1.0, np.abs(_expected(run_dir)).max())
    assert load_weights("resnet20", "cifar10-fp16").weights[0].dtype == "float32"


def test_headless_and_activation_options_reuse_the_published_weights(run_dir, env):
    publish(run_dir, "cifar10", manifest=env["manifest"])
    probs = load_weights("resnet20", "cifar10", classifier_activation="softmax",
                         include_preprocessing=True)(_rgb(), training=False).numpy()
    np.testing.assert_allclose(probs, keras.ops.softmax(_expected(run_dir)).numpy(), atol=1e-5)
    features = load_weights("resnet20", "cifar10", include_top=False, pooling="avg")
    assert features.output.shape[-1] == 64
    with pytest.raises(WeightsError, match="num_classes=10"):
        load_weights("resnet20", "cifar10", num_classes=100)


def test_load_from_a_run_directory_and_a_plain_file(run_dir, env, tmp_path):
    model = load_weights("resnet20", run_dir, include_preprocessing=True)
    np.testing.assert_allclose(model(_rgb(), training=False).numpy(), _expected(run_dir), atol=1e-5)
    with pytest.raises(WeightsError, match="preprocessing="):
        load_weights("resnet20", run_dir / "model.weights.h5", num_classes=10, input_shape=INPUT)
    net = model.layers[-1]
    plain = tmp_path / "plain.weights.h5"
    net.save_weights(plain)
    again = load_weights("resnet20", plain, num_classes=10, input_shape=INPUT)
    np.testing.assert_allclose(again.get_weights()[0], net.get_weights()[0])
    with pytest.raises(ChecksumError):
        load_weights("resnet20", plain, sha256="0" * 64, num_classes=10, input_shape=INPUT)
    with pytest.raises(WeightsError, match="does not fit"):  # a file of another model is refused
        load_weights("resnet32", plain, num_classes=10, input_shape=INPUT)


def test_publishing_twice_needs_overwrite(run_dir, env):
    publish(run_dir, "cifar10", manifest=env["manifest"])
    with pytest.raises(WeightsError, match="overwrite=True"):
        publish(run_dir, "cifar10", manifest=env["manifest"], verify=False)
    entry = publish(run_dir, "cifar10", manifest=env["manifest"], dtype="float16", overwrite=True, verify=False)
    files = sorted(p.name for p in (env["manifest"].parent / "files").iterdir())
    assert files == [Path(entry.file).name]  # the replaced file was removed


# --------------------------------------------------------------------------- verification
def test_corrupted_file_is_refused_with_a_clear_error(run_dir, env):
    entry = publish(run_dir, "cifar10", manifest=env["manifest"])
    path = env["manifest"].parent / entry.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"sha256 .* but .* is published: the file is corrupted") as err:
        load_weights("resnet20", "cifar10")
    assert str(path) in str(err.value)
    assert path.exists()  # packaged files are never deleted


# ------------------------------------------------------------------------------------- shards
def test_a_large_file_is_packaged_as_verified_shards(run_dir, env):
    whole = (run_dir / "model.weights.h5").stat().st_size
    entry = publish(run_dir, "cifar10", manifest=env["manifest"], shard_bytes=2**20)
    assert entry.file is None and len(entry.shards) == -(-whole // 2**20)
    files = entry.packaged_files()
    assert [p.name for p in files] == [f"resnet20-cifar10-{entry.sha256[:8]}.weights.h5.shard{i:02d}"
                                       for i in range(len(files))]
    assert all(p.stat().st_size <= 2**20 for p in files) and sum(p.stat().st_size for p in files) == entry.size
    assert not (env["manifest"].parent / "files" / files[0].name.rsplit(".", 1)[0]).exists()
    assert get_weights("resnet20", "cifar10").where() == "local"
    out = load_weights("resnet20", "cifar10", include_preprocessing=True)(_rgb(), training=False).numpy()
    np.testing.assert_allclose(out, _expected(run_dir), atol=1e-5)
    assert store.sha256_file(entry.cache_path()) == entry.sha256  # joined once into the cache


def test_a_corrupted_shard_is_named_and_a_corrupted_join_is_redone(run_dir, env):
    entry = publish(run_dir, "cifar10", manifest=env["manifest"], shard_bytes=2**20)
    cached = entry.cache_path()
    cached.write_bytes(b"truncated")
    with pytest.warns(UserWarning, match="Joining the packaged shards again"):
        load_weights("resnet20", "cifar10")
    assert store.sha256_file(cached) == entry.sha256
    cached.unlink()
    shard = entry.packaged_files()[1]
    shard.write_bytes(shard.read_bytes()[:-1] + b"x")
    with pytest.raises(ChecksumError, match=rf"shard {shard.name} of resnet20:cifar10 .* is published"):
        load_weights("resnet20", "cifar10")
    assert not cached.exists()


def test_republishing_removes_the_old_shards(run_dir, env):
    old = publish(run_dir, "cifar10", manifest=env["manifest"], shard_bytes=2**20)
    new = publish(run_dir, "cifar10", manifest=env["manifest"], dtype="float16", overwrite=True, verify=False)
    assert new.file is not None and (env["manifest"].parent / new.file).exists()
    assert not any(p.exists() for p in old.packaged_files())
    with pytest.raises(WeightsError, match="at least 1 MiB"):
        publish(run_dir, "cifar10", manifest=env["manifest"], overwrite=True, shard_bytes=1000)


def test_unknown_tag_lists_the_available_ones(run_dir, env):
    publish(run_dir, "cifar10", manifest=env["manifest"])
    with pytest.raises(WeightsError, match=r"Did you mean 'cifar10'.*Available tags for resnet20: cifar10"):
        load_weights("resnet20", "cifar-10")
    with pytest.raises(WeightsError, match=r"no published weights for 'resnet32'.*Models with weights: .*resnet20"):
        get_weights("resnet32", "cifar10")


def test_check_weights_refuses_what_load_weights_refuses_without_building(run_dir, env, tmp_path):
    publish(run_dir, "cifar10", manifest=env["manifest"])
    check_weights("resnet20", "cifar10")  # a published tag
    check_weights("resnet20", str(run_dir))  # a run directory
    with pytest.raises(WeightsError, match=r"Did you mean 'cifar10'"):
        check_weights("resnet20", "cifar-10")
    missing = str(tmp_path / "gone.weights.h5")
    for refuse in (check_weights, load_weights):
        with pytest.raises(WeightsError, match="gone.weights.h5"):
            refuse("resnet20", missing)


def test_bad_manifest_entries_are_reported(env):
    env["manifest"].parent.mkdir(parents=True)
    env["manifest"].write_text(json.dumps({"format": 1, "weights": [
        {"name": "resnet20", "tag": "x", "sha256": "abc", "file": "files/x.weights.h5"}]}))
    with pytest.raises(WeightsError, match="sha256 must be 64 hex digits"):
        list_weights()


# ------------------------------------------------------------------ cache, download, offline
def _remote_entry(run_dir: Path, env) -> tuple:
    """Publish a URL-only entry (file:// in a 'server' folder) and empty the cache."""
    server = env["tmp"] / "server"
    server.mkdir()
    entry = publish(run_dir, "cifar10", manifest=env["manifest"], package=False, url="file://placeholder")
    cached = env["cache"] / store.cache_name("resnet20", "cifar10", entry.sha256)
    assert cached.exists()  # package=False stages the file in the cache
    os.replace(cached, server / cached.name)
    return entry, server / cached.name, cached


def _set_url(env, url: str) -> None:
    data = json.loads(env["manifest"].read_text())
    data["weights"][0]["url"] = url
    env["manifest"].write_text(json.dumps(data))


def test_download_into_the_cache_with_a_unique_name(run_dir, env):
    entry, served, cached = _remote_entry(run_dir, env)
    assert entry.file is None and cached.name == f"resnet20-cifar10-{entry.sha256[:8]}.weights.h5"
    _set_url(env, served.as_uri())
    model = load_weights("resnet20", "cifar10", include_preprocessing=True)
    np.testing.assert_allclose(model(_rgb(), training=False).numpy(), _expected(run_dir), atol=1e-5)
    assert sorted(p.name for p in env["cache"].iterdir()) == [cached.name]  # no temporary leftovers
    served.unlink()
    load_weights("resnet20", "cifar10", offline=True)  # now served from the cache


def test_offline_with_an_empty_cache_names_the_missing_file(run_dir, env, monkeypatch):
    entry, served, cached = _remote_entry(run_dir, env)
    _set_url(env, served.as_uri())
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(WeightsNotFound) as err:
        load_weights("resnet20", "cifar10")
    text = str(err.value)
    assert cached.name in text and str(cached) in text and "offline" in text
    assert not cached.exists()


def test_a_download_with_the_wrong_hash_leaves_nothing_behind(run_dir, env):
    entry, served, cached = _remote_entry(run_dir, env)
    served.write_bytes(served.read_bytes()[:-10] + b"0123456789")
    _set_url(env, served.as_uri())
    with pytest.raises(ChecksumError, match="it was deleted"):
        load_weights("resnet20", "cifar10")
    assert not env["cache"].exists() or not list(env["cache"].iterdir())


def test_a_corrupted_cache_file_is_deleted_then_fetched_again(run_dir, env):
    entry, served, cached = _remote_entry(run_dir, env)
    _set_url(env, served.as_uri())
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"not the weights")
    with pytest.raises(ChecksumError, match="cached file was deleted"):
        load_weights("resnet20", "cifar10", offline=True)
    assert not cached.exists()
    cached.write_bytes(b"not the weights")
    with pytest.warns(UserWarning, match="Downloading it again"):
        load_weights("resnet20", "cifar10")
    assert store.sha256_file(cached) == entry.sha256


@pytest.fixture
def http_server(tmp_path):
    """A bounded http.server on 127.0.0.1 serving tmp_path/www (never the internet)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_over_http_and_a_404(run_dir, env, http_server):
    root, base = http_server
    entry, served, cached = _remote_entry(run_dir, env)
    os.replace(served, root / served.name)
    _set_url(env, f"{base}/missing.weights.h5")
    with pytest.raises(WeightsError, match="404"):
        load_weights("resnet20", "cifar10", timeout=5)
    assert not env["cache"].exists() or not list(env["cache"].iterdir())
    _set_url(env, f"{base}/{served.name}")
    model = load_weights("resnet20", "cifar10", timeout=5, include_preprocessing=True)
    np.testing.assert_allclose(model(_rgb(), training=False).numpy(), _expected(run_dir), atol=1e-5)
    assert cached.exists()


def test_the_cache_follows_keras_home(env):
    assert store.cache_dir() == env["tmp"] / "keras_home" / "zoo" / "weights"


# ----------------------------------------------------------------------------- publish_file
def test_publish_a_plain_weights_file_with_a_preset(env, tmp_path):
    net = zoo.build("all_cnn_c", num_classes=10)
    plain = tmp_path / "allcnn.weights.h5"
    net.save_weights(plain)
    entry = publish_file(plain, "all_cnn_c", "synthetic", build={"num_classes": 10}, preprocessing="torch",
                         manifest=env["manifest"], classes=list("abcdefghij"))
    model = load_weights("all_cnn_c", "synthetic", include_preprocessing=True)
    x = _rgb()
    mean = 255 * np.array([0.485, 0.456, 0.406], "float32")
    std = 255 * np.array([0.229, 0.224, 0.225], "float32")
    np.testing.assert_allclose(model(x).numpy(), net((x - mean) / std).numpy(), atol=1e-5)
    assert entry.preprocessing["kind"] == "torch"


def test_preprocessing_presets_match_the_sources():
    from zoo.weights.preprocess import layer_from_spec, spec_for

    x = _rgb()
    caffe = layer_from_spec(spec_for("caffe"))  # rebuilt from its JSON record, in safe mode
    expected = keras.applications.imagenet_utils.preprocess_input(x.copy(), mode="caffe")
    np.testing.assert_allclose(caffe(x).numpy(), expected, atol=1e-4)
    torch_like = layer_from_spec(json.loads(json.dumps(spec_for("torch"))))
    expected = keras.applications.imagenet_utils.preprocess_input(x.copy(), mode="torch")
    np.testing.assert_allclose(torch_like(x).numpy(), expected, atol=1e-5)


# ------------------------------------------------------------------------- the build contract
def _loose_file(run_dir: Path, folder: Path) -> Path:
    """The run's inference-model file as a loose path, with the ``.json`` sidecar a conversion writes."""
    path = folder / "loose" / "resnet20.weights.h5"
    path.parent.mkdir()
    shutil.copyfile(run_dir / "model.weights.h5", path)
    facts = run_facts(run_dir)
    Path(f"{path}.json").write_text(json.dumps({"name": "resnet20", "build": facts["build"],
                                                "preprocessing": facts["preprocessing"]}))
    return path


def _weights_of_kind(kind: str, run_dir: Path, env) -> str:
    if kind == "tag":
        publish(run_dir, "cifar10", manifest=env["manifest"])
        return "cifar10"
    return str(run_dir) if kind == "run" else str(_loose_file(run_dir, env["tmp"]))


@pytest.mark.parametrize("kind", ["tag", "run", "path"])
def test_a_tag_a_run_directory_and_a_path_give_the_same_input_convention(kind, run_dir, env):
    weights = _weights_of_kind(kind, run_dir, env)
    net = zoo.build("resnet20", weights=weights)  # the default: the network alone, normalised input
    assert net.name == "resnet20" and [type(x).__name__ for x in net.layers[:2]] == ["InputLayer", "Conv2D"]
    model = zoo.build("resnet20", weights=weights, include_preprocessing=True)  # raw 0..255 RGB
    assert [type(x).__name__ for x in model.layers] == ["InputLayer", "Normalization", "Functional"]
    x = _rgb()
    np.testing.assert_allclose(model(x, training=False).numpy(), _expected(run_dir), atol=1e-5)
    np.testing.assert_allclose(net(model.layers[1](x), training=False).numpy(), _expected(run_dir), atol=1e-5)
    same = load_weights("resnet20", weights)  # load_weights is zoo.build with loading options: the same default
    assert same.name == "resnet20" and len(same.layers) == len(net.layers)
    assert check_weights("resnet20", weights).kind == {"path": "file"}.get(kind, kind)


def test_a_plain_network_file_names_no_normalisation(run_dir, tmp_path):
    net = zoo.build("resnet20", weights=str(run_dir))
    plain = tmp_path / "plain.weights.h5"
    net.save_weights(plain)
    again = zoo.build("resnet20", weights=str(plain), num_classes=10, input_shape=INPUT)
    np.testing.assert_allclose(again.get_weights()[0], net.get_weights()[0])
    with pytest.raises(ZooError, match="name no normalisation.*include_preprocessing=False"):
        zoo.build("resnet20", weights=str(plain), include_preprocessing=True, num_classes=10, input_shape=INPUT)
    model = load_weights("resnet20", plain, include_preprocessing=True, preprocessing="torch", num_classes=10,
                         input_shape=INPUT)
    assert type(model.layers[1]).__name__ == "Preprocess"
    with pytest.raises(ZooError, match="include_preprocessing must be True or False"):
        zoo.build("resnet20", weights=str(run_dir), include_preprocessing="yes")


def _zoo_attributes(model) -> list[str]:
    return sorted(k for k in vars(model) if k.startswith("zoo") or k == "feature_info")


@pytest.mark.parametrize("with_weights", [False, True], ids=["random", "weights"])
@pytest.mark.parametrize("include_preprocessing", [False, True], ids=["normalised", "raw"])
def test_a_build_survives_a_keras_round_trip_and_carries_no_zoo_attributes(with_weights, include_preprocessing,
                                                                          run_dir, tmp_path):
    model = zoo.build("resnet20", weights=str(run_dir) if with_weights else None,
                      include_preprocessing=include_preprocessing)
    assert _zoo_attributes(model) == [] and all(_zoo_attributes(x) == [] for x in model.layers)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert [x.name for x in loaded.layers] == [x.name for x in model.layers]
    x = _rgb() if include_preprocessing else np.random.default_rng(3).normal(size=(2, *INPUT)).astype("float32")
    np.testing.assert_allclose(loaded(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-5)
    if with_weights and include_preprocessing:
        np.testing.assert_allclose(loaded(x, training=False).numpy(), _expected(run_dir), atol=1e-5)


def test_weights_info_describes_runs_and_paths_without_building(run_dir, env):
    run = weights_info("resnet20", run_dir)
    assert run["kind"] == "run" and run["classes"][0] == "airplane" and run["build"]["num_classes"] == 10
    loose = weights_info("resnet20", _loose_file(run_dir, env["tmp"]))
    assert loose["kind"] == "file" and loose["preprocessing"]["layer"]["class_name"] == "Normalization"


def test_zoo_build_is_the_model_registry_s_and_asks_for_the_loader_by_name():
    from zoo.models import registry

    assert zoo.build is registry.build
    code = ("import sys\nfrom zoo.errors import ZooError\nfrom zoo.models import build\ntry:\n"
            "    build('resnet20', weights='cifar10')\nexcept ZooError as err:\n    print(err)\n"
            "print('zoo.weights.loading' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    message, imported = out.stdout.strip().splitlines()
    assert "`import zoo.weights.loading`" in message and imported == "False"


LIGHT = ("tensorflow_datasets", "keras_tuner", "zoo.training", "keras")


def _imports_of(code: str) -> list[str]:
    code += f"\nprint(sorted(m for m in {LIGHT!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_the_zoo_weights_command_imports_no_training_stack():
    code = ("import argparse, sys\nimport zoo.cli.weights as cli\np = argparse.ArgumentParser()\n"
            "cli.add_arguments(p, 'weights')\ncli.run(p.parse_args([]))")
    assert _imports_of(code) == []  # not even Keras: the manifests are JSON


def test_zoo_weights_through_the_dispatcher_imports_no_training_stack():
    assert _imports_of("import sys\nfrom zoo.cli import main\nassert main(['weights']) == 0") == []


# --------------------------------------------------------------------------------- layering
def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, function-local imports included, and whether it reaches for importlib."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Name) and node.id == "__import__":
            names.add("__import__")
    return names


def test_nothing_below_zoo_weights_imports_it():
    root = Path(zoo.__file__).parent
    lower = [root / "flops.py", root / "report.py", root / "errors.py",
             *(root / "models").glob("*.py"), *(root / "layers").glob("*.py"), *(root / "data").glob("*.py")]
    offenders = {p.name: sorted(m for m in _imported_modules(p) if m.startswith("zoo.weights")) for p in lower}
    assert not {k: v for k, v in offenders.items() if v}
    for path in (root / "models").glob("*.py"):  # and no way around it: the models reach weights through a hook only
        assert not {"importlib", "__import__"} & _imported_modules(path), path.name


def test_listing_weights_does_not_import_keras():
    code = "import sys, zoo.weights as w; w.list_weights(); print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"

"""Upstream ImageNet weights by name: registry facts, first-use download, hash checks, conversion
parity, offline reuse and errors, user-supplied FishNet checkpoints, the options they combine with.

This machine reaches no download.pytorch.org nor storage.googleapis.com, so every download below
comes from a local HTTP server on 127.0.0.1 (``http.server`` in a thread) serving files written in
the publishers' own formats — ``torch.save(state_dict)`` of modules whose keys are torchvision's /
the FishNet authors', and keras.applications' legacy ``.h5`` — with random weights, under the
publishers' file names. A torchvision file is named ``<model>-<sha256[:8]>.pth`` as torchvision
names its own, so the entry checks it exactly as it would check the real file. The real URLs and
hashes are checked against :data:`FACTS` (and Keras' against its installed source), not fetched.
"""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch: pip install torch==2.13.0")

import keras  # noqa: E402

import zoo  # noqa: E402
from test_convert import (FISHNET99, FishNet, TvBasicBlock, TvResNet, TvSqueezeNet,  # noqa: E402
                          _randomize_torch, _torch_logits)
from zoo.weights import imagenet, store, upstream  # noqa: E402
from zoo.weights.convert import convert  # noqa: E402
from zoo.weights.convert.common import ConversionError  # noqa: E402
from zoo.weights.convert.torchvision import fold_fc1  # noqa: E402
from zoo.weights.errors import ChecksumError, WeightsError, WeightsNotFound  # noqa: E402
from zoo.weights.finetune import refold_fc1  # noqa: E402
from zoo.weights.imagenet import UpstreamFile  # noqa: E402

TOL = 1e-4
MEAN = 255 * np.array([0.485, 0.456, 0.406], "float32")
STD = 255 * np.array([0.229, 0.224, 0.225], "float32")
ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------- the publishers' facts
# (name, tag): (url, the publisher's hash, top-1, top-5), copied by hand from:
#   torchvision 0.29.1 (wheel from PyPI) torchvision/models/resnet.py, squeezenet.py, vgg.py:
#     <Model>_Weights.IMAGENET1K_V1 / IMAGENET1K_V2 -> url, meta["_metrics"]["ImageNet-1K"]["acc@1"/"acc@5"];
#     the hash is the sha256 prefix in the file name (torch.hub HASH_REGEX, check_hash=True)
#   Keras 3.15.1 keras/src/applications/resnet.py (BASE_WEIGHTS_PATH, WEIGHTS_HASHES["resnet50"]),
#     vgg16.py / vgg19.py (WEIGHTS_PATH, file_hash: md5); top-1/top-5: https://keras.io/api/applications/
#   kevin-ssy/FishNet README.md "Models" (Top-1/Top-5; checkpoints on Baidu Yun / Dropbox pages only)
TV, KA = "https://download.pytorch.org/models/", "https://storage.googleapis.com/tensorflow/keras-applications/"
FACTS = {
    ("resnet18", "imagenet"): (TV + "resnet18-f37072fd.pth", "sha256:f37072fd", 69.758, 89.078),
    ("resnet34", "imagenet"): (TV + "resnet34-b627a593.pth", "sha256:b627a593", 73.314, 91.420),
    ("resnet50", "imagenet"): (TV + "resnet50-0676ba61.pth", "sha256:0676ba61", 76.130, 92.862),
    ("resnet50", "imagenet-v2"): (TV + "resnet50-11ad3fa6.pth", "sha256:11ad3fa6", 80.858, 95.434),
    ("resnet101", "imagenet"): (TV + "resnet101-63fe2227.pth", "sha256:63fe2227", 77.374, 93.546),
    ("resnet101", "imagenet-v2"): (TV + "resnet101-cd907fc2.pth", "sha256:cd907fc2", 81.886, 95.780),
    ("resnet152", "imagenet"): (TV + "resnet152-394f9c45.pth", "sha256:394f9c45", 78.312, 94.046),
    ("resnet152", "imagenet-v2"): (TV + "resnet152-f82ba261.pth", "sha256:f82ba261", 82.284, 96.002),
    ("squeezenet1_0", "imagenet"): (TV + "squeezenet1_0-b66bff10.pth", "sha256:b66bff10", 58.092, 80.420),
    ("squeezenet1_1", "imagenet"): (TV + "squeezenet1_1-b8a52dc0.pth", "sha256:b8a52dc0", 58.178, 80.624),
    ("vgg11", "imagenet"): (TV + "vgg11-8a719046.pth", "sha256:8a719046", 69.020, 88.628),
    ("vgg13", "imagenet"): (TV + "vgg13-19584684.pth", "sha256:19584684", 69.928, 89.246),
    ("vgg16", "imagenet"): (TV + "vgg16-397923af.pth", "sha256:397923af", 71.592, 90.382),
    ("vgg19", "imagenet"): (TV + "vgg19-dcbb9e9d.pth", "sha256:dcbb9e9d", 72.376, 90.876),
    ("resnet50", "imagenet-keras"): (KA + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                                     "md5:2cb95161c43110f7111970584f804107", 74.9, 92.1),
    ("vgg16", "imagenet-keras"): (KA + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                                  "md5:64373286793e3c8b2b4e3219cbf3544b", 71.3, 90.1),
    ("vgg19", "imagenet-keras"): (KA + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
                                  "md5:cbe5617147190e668d6c5d5026f83318", 71.3, 90.0),
    ("fishnet99", "imagenet"): (None, None, 77.41, 93.59),
    ("fishnet150", "imagenet"): (None, None, 78.14, 93.95),
    ("fishnet150", "imagenet-cosine"): (None, None, 79.35, 94.75),
    ("fishnet201", "imagenet-cosine"): (None, None, 79.71, 94.79),
}
KERAS_NOTOP = {  # the headless files, same sources
    "resnet50": (KA + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "md5:4d473c1dd8becc155b73f8504c6f6626"),
    "vgg16": (KA + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "md5:6d6bbae143d832006294945121d1f1fc"),
    "vgg19": (KA + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "md5:253f8cb515780f3b799900260a226db6"),
}


def test_registry_facts_are_the_publishers():
    assert set(imagenet.UPSTREAM) == set(FACTS)
    for key, (url, published, top1, top5) in FACTS.items():
        up = imagenet.UPSTREAM[key]
        assert (up.files[0].url, up.files[0].hash, up.top1, up.top5) == (url, published, top1, top5), key
        assert zoo.get_entry(up.name).name == up.name and up.converter in ("torchvision", "keras", "fishnet")
        assert up.license and up.source and up.preprocessing in ("torch", "caffe")
        if up.converter == "torchvision":  # the hash torch.hub checks is the one in the file name
            assert up.files[0].name == url.rsplit("/", 1)[1] and f"-{published[7:]}." in up.files[0].name
        if up.user_supplied:
            assert up.page.startswith("https://www.dropbox.com/") and up.files[0].name in up.page
    for name, (url, published) in KERAS_NOTOP.items():
        notop = imagenet.UPSTREAM[(name, "imagenet-keras")].file(include_top=False)
        assert (notop.url, notop.hash, notop.include_top) == (url, published, False)
    assert imagenet.UPSTREAM[("resnet50", "imagenet-keras")].build == {"layout": "keras"}


def test_keras_hashes_match_the_installed_keras_source():
    """The md5s above, read again from keras.applications' own files as installed."""
    base = Path(importlib.util.find_spec("keras").submodule_search_locations[0]) / "src" / "applications"
    resnet = re.search(r'"resnet50": \(\s*"(\w+)",\s*"(\w+)"', (base / "resnet.py").read_text())
    assert resnet, "WEIGHTS_HASHES['resnet50'] not found in keras' resnet.py"
    assert f"md5:{resnet.group(1)}" == FACTS[("resnet50", "imagenet-keras")][1]
    assert f"md5:{resnet.group(2)}" == KERAS_NOTOP["resnet50"][1]
    for name in ("vgg16", "vgg19"):
        hashes = re.findall(r'file_hash="(\w+)"', (base / f"{name}.py").read_text())
        assert [f"md5:{h}" for h in hashes] == [FACTS[(name, "imagenet-keras")][1], KERAS_NOTOP[name][1]]


# ------------------------------------------------------------------------- a local mirror
class Mirror:
    """A local HTTP server over a folder; ``modes[name]``: ``"cut"`` (half the bytes, then close) or
    ``"stall"`` (3 MiB, then wait for ``release``); ``requests`` lists the names asked for."""

    def __init__(self, root: Path):
        self.root, self.modes, self.requests, self.release = root, {}, [], threading.Event()
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                name = self.path.lstrip("/")
                mirror.requests.append(name)
                path = mirror.root / name
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                mode = mirror.modes.get(name)
                if mode == "cut":
                    self.wfile.write(data[: len(data) // 2])
                elif mode == "stall":
                    self.wfile.write(data[: 3 * 2**20])
                    self.wfile.flush()
                    mirror.release.wait(60)
                else:
                    self.wfile.write(data)
                self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/{name}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch):
    for var in (store.OFFLINE_ENV, upstream.MIRROR_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    mirror = Mirror(tmp_path / "mirror")
    (tmp_path / "mirror").mkdir()
    yield mirror
    mirror.close()


def _torchvision_file(folder: Path, model: str, module) -> tuple[Path, str]:
    """``torch.save(state_dict)`` under torchvision's naming, ``<model>-<sha256[:8]>.pth``."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{model}.tmp"
    torch.save(module.state_dict(), tmp)
    sha = store.sha256_file(tmp)
    path = folder / f"{model}-{sha[:8]}.pth"
    os.replace(tmp, path)
    return path, sha


@pytest.fixture(scope="module")
def squeeze(tmp_path_factory):
    ref = TvSqueezeNet("1_1", num_classes=1000)
    _randomize_torch(ref)
    with torch.no_grad():  # positive class-conv bias: the final ReLU keeps most logits alive
        ref.classifier[1].bias.add_(1.0)
    return ref, *_torchvision_file(tmp_path_factory.mktemp("squeeze"), "squeezenet1_1", ref)


def _serve(monkeypatch, mirror: Mirror, key: tuple[str, str], path: Path, published: str,
           include_top: bool = True) -> UpstreamFile:
    """Put ``path`` on the mirror and point the registry entry ``key`` at it (its name, hash)."""
    os.link(path, mirror.root / path.name) if not (mirror.root / path.name).exists() else None
    file = UpstreamFile(path.name, mirror.url(path.name), published, None, include_top)
    real = imagenet.UPSTREAM[key]
    files = tuple(file if f.include_top == include_top else f for f in real.files)
    monkeypatch.setitem(imagenet.UPSTREAM, key, dataclasses.replace(real, files=files))
    return file


def _rgb(size: int, batch: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")


# ----------------------------------------------------------------------------- first use
def test_first_use_downloads_with_progress_verifies_converts_then_works_offline(env, squeeze, monkeypatch, capsys):
    ref, path, sha = squeeze
    file = _serve(monkeypatch, env, ("squeezenet1_1", "imagenet"), path, f"sha256:{sha[:8]}")
    seen = []
    model = zoo.build("squeezenet1_1", weights="imagenet", include_preprocessing=True,
                      progress=lambda got, total: seen.append((got, total)))
    size = path.stat().st_size
    assert seen[-1] == (size, size) and [g for g, _ in seen] == sorted(g for g, _ in seen) and len(seen) >= 2
    rgb = _rgb(224)
    diff = float(np.abs(model(rgb).numpy() - _torch_logits(ref, (rgb - MEAN) / STD)).max())
    assert diff <= TOL, diff
    folder = upstream.folder()
    source, converted = folder / file.name, folder / "squeezenet1_1-imagenet.weights.h5"
    record = json.loads(Path(f"{converted}.json").read_text())
    assert record["sha256"] == store.sha256_file(converted) and record["upstream"]["source_sha256"] == sha
    assert record["upstream"]["published_hash"] == f"sha256:{sha[:8]}" and record["build"] == {"num_classes": 1000}
    readable = 0o666 & ~store.current_umask()
    assert all(p.stat().st_mode & 0o777 == readable for p in (source, converted, Path(f"{converted}.json")))
    assert not list(folder.glob(".*"))  # no temporary file left
    # the default progress bar, on stderr
    source.unlink()
    for p in (converted, Path(f"{converted}.json")):
        p.unlink()
    zoo.build("squeezenet1_1", weights="imagenet")
    err = capsys.readouterr().err
    assert f"downloading {file.name}" in err and "100%" in err
    # later uses: offline, the server gone
    env.close()
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    asked = len(env.requests)
    again = zoo.build("squeezenet1_1", weights="imagenet", include_preprocessing=True)
    assert np.abs(again(rgb).numpy() - model(rgb).numpy()).max() == 0 and len(env.requests) == asked
    assert upstream.state(imagenet.UPSTREAM[("squeezenet1_1", "imagenet")]) == "converted"


def test_a_corrupted_download_is_refused_and_removed(env, monkeypatch):
    """The real registry entries through ZOO_WEIGHTS_MIRROR: files of the published names but other
    bytes fail the publisher's hash (torchvision's sha256 prefix, Keras' md5) and are deleted."""
    monkeypatch.setenv(upstream.MIRROR_ENV, env.url(""))
    for key, name in ((("resnet18", "imagenet"), "resnet18-f37072fd.pth"),
                      (("vgg16", "imagenet-keras"), "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")):
        (env.root / name).write_bytes(os.urandom(4096))
        with pytest.raises(ChecksumError, match=r"(sha256|md5) [0-9a-f]+, but [0-9a-f]+ is published; it was deleted"):
            zoo.build(key[0], weights=key[1], include_top=False)
        assert env.requests[-1] == name
        assert not list(upstream.folder().iterdir())  # neither the file nor a partial one
    # a corrupted copy already in the cache is deleted too (and, offline, nothing else is tried)
    (upstream.folder() / "resnet18-f37072fd.pth").write_bytes(b"not the published file")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.warns(UserWarning, match="is published: the file is corrupted .* It was deleted"):
        with pytest.raises(WeightsNotFound, match="offline"):
            zoo.build("resnet18", weights="imagenet")
    assert not (upstream.folder() / "resnet18-f37072fd.pth").exists()


def test_a_changed_converted_file_is_converted_again(env, squeeze, monkeypatch):
    ref, path, sha = squeeze
    _serve(monkeypatch, env, ("squeezenet1_1", "imagenet"), path, f"sha256:{sha[:8]}")
    zoo.build("squeezenet1_1", weights="imagenet", progress=False)
    converted = upstream.folder() / "squeezenet1_1-imagenet.weights.h5"
    with open(converted, "r+b") as fh:  # flip a byte of the converted file
        fh.seek(converted.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setenv("ZOO_OFFLINE", "1")  # the cached source is enough
    with pytest.warns(UserWarning, match="not the .* recorded when it was converted; deleted .* converting it again"):
        model = zoo.build("squeezenet1_1", weights="imagenet")
    x = (_rgb(224) - MEAN) / STD
    assert np.abs(model(x).numpy() - _torch_logits(ref, x)).max() <= TOL


def test_a_cut_or_killed_download_is_never_used(env, squeeze, monkeypatch):
    ref, path, sha = squeeze
    file = _serve(monkeypatch, env, ("squeezenet1_1", "imagenet"), path, f"sha256:{sha[:8]}")
    env.modes[file.name] = "cut"  # the server closes the connection halfway
    with pytest.raises(WeightsNotFound, match=r"stopped after \d+ (bytes )?of \d+( bytes)?; the partial file was deleted.*"
                                              r"download .* by hand and put it in"):
        zoo.build("squeezenet1_1", weights="imagenet", progress=False)
    assert not list(upstream.folder().iterdir())
    # a download killed mid-transfer (SIGKILL: no cleanup runs) leaves only its .part file
    env.modes[file.name] = "stall"
    code = "import sys\nfrom zoo.weights import store\nstore.download(sys.argv[1], sys.argv[2], sys.argv[3])"
    dest = upstream.folder(create=True) / file.name
    proc = subprocess.Popen([sys.executable, "-c", code, file.url, str(dest), file.hash], cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and not any(p.stat().st_size >= 2**20 for p in upstream.folder().glob(".*.part")):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    env.release.set()
    parts = list(upstream.folder().glob(".*.part"))
    assert len(parts) == 1 and 0 < parts[0].stat().st_size < path.stat().st_size and not dest.exists()
    with pytest.raises(WeightsNotFound, match="offline"):  # the partial file is not a cached copy
        zoo.build("squeezenet1_1", weights="imagenet", offline=True)
    env.modes.pop(file.name)
    model = zoo.build("squeezenet1_1", weights="imagenet", progress=False)  # downloads afresh
    assert store.sha256_file(dest) == sha
    x = (_rgb(224) - MEAN) / STD
    assert np.abs(model(x).numpy() - _torch_logits(ref, x)).max() <= TOL


def test_offline_or_unreachable_the_error_names_the_url_the_file_and_the_folder(env, monkeypatch, capsys):
    from zoo.cli import main

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(WeightsNotFound) as err:
        zoo.build("vgg16", weights="imagenet")
    text = str(err.value)
    assert "\n" not in text and text.startswith("offline (ZOO_OFFLINE=1")
    for part in ("https://download.pytorch.org/models/vgg16-397923af.pth", f"{upstream.folder()}/ as "
                 "vgg16-397923af.pth", "sha256:397923af"):
        assert part in text
    assert main(["weights", "fetch", "vgg16", "imagenet-keras", "--no-top"]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in line
    # no network: a closed port on the mirror
    monkeypatch.delenv("ZOO_OFFLINE")
    monkeypatch.setenv(upstream.MIRROR_ENV, "http://127.0.0.1:9")
    with pytest.raises(WeightsNotFound, match=r"downloading http://127.0.0.1:9/resnet18-f37072fd.pth failed .*"
                                              r"download .* by hand and put it in .*upstream/ as resnet18-f37072fd"):
        zoo.build("resnet18", weights="imagenet", progress=False)


def test_a_copy_downloaded_by_hand_is_used_offline(env, squeeze, monkeypatch):
    ref, path, sha = squeeze
    _serve(monkeypatch, env, ("squeezenet1_1", "imagenet"), path, f"sha256:{sha[:8]}")
    env.close()
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    hub = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"  # torchvision's own cache is looked in too
    hub.mkdir(parents=True)
    os.link(path, hub / path.name)
    model = zoo.build("squeezenet1_1", weights="imagenet", include_top=False, pooling="avg")
    assert model.output.shape[-1] == 512 and not (upstream.folder() / path.name).exists()
    # `zoo weights add` of a published file: checked against the publisher's hash, copied in, converted
    bad = hub.parent / path.name
    bad.write_bytes(b"x" * 100)
    with pytest.raises(ChecksumError, match="is published"):
        upstream.add_checkpoint("squeezenet1_1", "imagenet", bad)
    out = upstream.add_checkpoint("squeezenet1_1", "imagenet", path)
    assert (upstream.folder() / path.name).read_bytes() == path.read_bytes() and out.exists()


# ------------------------------------------------------------------------ parity, options
@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    ref = TvResNet(TvBasicBlock, (2, 2, 2, 2), num_classes=1000)
    _randomize_torch(ref, seed=3)
    return ref, *_torchvision_file(tmp_path_factory.mktemp("resnet18"), "resnet18", ref)


def test_resnet18_imagenet_parity_and_the_options_it_combines_with(env, resnet18, monkeypatch):
    ref, path, sha = resnet18
    _serve(monkeypatch, env, ("resnet18", "imagenet"), path, f"sha256:{sha[:8]}")
    shape = {"input_shape": (128, 128, 3)}
    model = zoo.build("resnet18", weights="imagenet", include_preprocessing=True, progress=False, **shape)
    rgb = _rgb(128)
    x = (rgb - MEAN) / STD
    diff = float(np.abs(model(rgb).numpy() - _torch_logits(ref, x)).max())
    assert diff <= TOL, diff
    trunk = torch.nn.Sequential(*list(ref.children())[:-1])  # up to the average pool
    pooled = zoo.build("resnet18", weights="imagenet", include_top=False, pooling="avg", **shape)
    assert np.abs(pooled(x).numpy() - _torch_logits(trunk, x).reshape(2, -1)).max() <= TOL
    feats = zoo.build("resnet18", weights="imagenet", features_only=True, out_indices=(1, 4), output_stride=16, **shape)
    assert [tuple(o.shape[1:]) for o in feats(x)] == [(32, 32, 64), (8, 8, 512)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tuned = zoo.build("resnet18", weights="imagenet", num_classes=10)
    said = [str(w.message) for w in caught if "start fresh" in str(w.message)]
    assert len(said) == 1 and "layer(s) fc start fresh" in said[0] and "num_classes=10" in said[0]
    assert tuned.output.shape[-1] == 10
    stem = tuned.get_layer("stem_conv").kernel.numpy()
    np.testing.assert_array_equal(stem, np.transpose(ref.conv1.weight.detach().numpy(), (2, 3, 1, 0)))
    with pytest.raises(WeightsError, match="converted for layout='torchvision'"):
        zoo.build("resnet18", weights="imagenet", layout="keras")


def test_keras_vgg16_headless_file_for_per_pixel_features(env, monkeypatch, tmp_path, capsys):
    """keras.applications' legacy ``_notop.h5`` (md5-checked), only that file fetched for a headless
    request; ``features_only`` at full resolution equals VGG16's block1 on caffe-preprocessed input;
    the features example then uses these weights."""
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    import h5py

    src = keras.applications.VGG16(weights=None, include_top=False)
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy.save_weights_to_hdf5_group(f, src)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    _serve(monkeypatch, env, ("vgg16", "imagenet-keras"), path, f"md5:{md5}", include_top=False)
    net = zoo.build("vgg16", weights="imagenet-keras", features_only=True, out_indices=(0,), include_preprocessing=True,
                    input_shape=(48, 40, 3), progress=False)
    assert env.requests == [path.name]  # not the 528 MB file with the classifier
    rgb = np.random.default_rng(1).uniform(0, 255, (2, 48, 40, 3)).astype("float32")
    block1 = keras.Model(src.input, src.get_layer("block1_conv2").output)
    expected = block1(keras.applications.vgg16.preprocess_input(rgb.copy())).numpy()
    got = net(rgb).numpy()
    assert got.shape == (2, 48, 40, 64) and np.abs(got - expected).max() <= TOL * max(1.0, np.abs(expected).max())
    deep = zoo.build("vgg16", weights="imagenet-keras", features_only=True, out_indices=(4,), output_stride=8,
                     input_shape=(64, 64, 3))
    assert tuple(deep.outputs[0].shape[1:]) == (8, 8, 512)
    spec = importlib.util.spec_from_file_location("pixel_features", ROOT / "examples" / "pixel_features.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.pick_weights(download=False)[:2] == ("vgg16", "imagenet-keras")
    out = tmp_path / "features.png"
    assert example.main(["--size", "40", "--out", str(out)]) == 0
    assert "vgg16:imagenet-keras (keras.applications's ImageNet weights)" in capsys.readouterr().out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_features_example_says_when_it_falls_back_to_the_cifar10_weights(env, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("pixel_features", ROOT / "examples" / "pixel_features.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = tmp_path / "fallback.png"
    assert example.main(["--size", "32", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "resnet20:cifar10, the zoo's CIFAR-10 weights (no upstream VGG-16 weights cached" in said
    assert out.stat().st_size > 1000
    rgb = example.pca_rgb(np.random.default_rng(0).normal(size=(6, 5, 8)))
    assert rgb.shape == (6, 5, 3) and rgb.min() >= 0 and rgb.max() <= 1


@pytest.mark.parametrize("size", [1, 2, 5, 7, 10])
def test_refolding_fc1_equals_folding_the_source_at_that_size(size):
    rng = np.random.default_rng(size)
    c, out = 3, 4
    weight = rng.normal(size=(out, c * 49))  # torchvision's classifier.0 (channels-first 7x7)
    at7 = fold_fc1(weight, c, 7, 7)
    np.testing.assert_allclose(refold_fc1(at7, c, size, size), fold_fc1(weight, c, size, size), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------- user-supplied FishNet
def test_fishnet_user_supplied_checkpoint_is_added_once_and_pinned(env, tmp_path, capsys):
    from zoo.cli import main

    with pytest.raises(WeightsNotFound, match=r"not directly downloadable: download it from https://www.dropbox.com/"
                                              r".*fishnet99_ckpt.tar.* and run `zoo weights add fishnet99 imagenet PATH`"):
        zoo.build("fishnet99", weights="imagenet")
    ref = FishNet(**FISHNET99, num_cls=1000)
    _randomize_torch(ref, seed=5)
    path = tmp_path / "fishnet99_ckpt.tar"  # the authors' format: DataParallel keys inside a checkpoint dict
    torch.save({"epoch": 100, "best_prec1": 77.41, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}},
               path)
    assert main(["weights", "add", "fishnet99", "imagenet", str(path)]) == 0
    assert "added fishnet99:imagenet" in capsys.readouterr().out
    converted = upstream.folder() / "fishnet99-imagenet.weights.h5"
    record = json.loads(Path(f"{converted}.json").read_text())
    assert record["upstream"]["pinned_sha256"] == store.sha256_file(path) == record["upstream"]["source_sha256"]
    model = zoo.build("fishnet99", weights="imagenet", input_shape=(64, 64, 3), include_preprocessing=True)
    rgb = _rgb(64)
    diff = float(np.abs(model(rgb).numpy() - _torch_logits(ref, (rgb - MEAN) / STD)).max())
    assert diff <= TOL, diff
    other = tmp_path / "other.tar"
    torch.save({"state_dict": {f"module.{k}": v + 1 for k, v in ref.state_dict().items()}}, other)
    assert main(["weights", "add", "fishnet99", "imagenet", str(other)]) == 2
    assert "was added from a checkpoint with sha256" in capsys.readouterr().err
    assert main(["weights", "fishnet99"]) == 0
    assert re.search(r"fishnet99\s+imagenet\s+FishNet\s+77.41%\s+–\s+converted", capsys.readouterr().out)


# ------------------------------------------------------------------ converter gaps, listing
def test_a_checkpoint_of_another_depth_says_which_model_it_looks_like():
    resnet18 = TvResNet(TvBasicBlock, (2, 2, 2, 2), num_classes=10).state_dict()
    with pytest.raises(ConversionError, match=r"into resnet34: it looks like resnet18 \(basic blocks 2-2-2-2; resnet34 "
                                              r"has basic blocks 3-4-6-3\).*Convert it into resnet18\.$") as err:
        convert("torchvision", "resnet34", resnet18)
    assert len(str(err.value)) < 300
    with pytest.raises(ConversionError, match=r"it looks like squeezenet1_0 \(conv1 7x7 with 96 filters"):
        convert("torchvision", "squeezenet1_1", TvSqueezeNet("1_0", num_classes=10).state_dict())
    vgg13 = {f"features.{i}.weight": np.zeros((1, 1, 1, 1), "float32") for i in range(10)}
    with pytest.raises(ConversionError, match=r"it looks like vgg13 \(10 convolutions; vgg16 has 13 convolutions\)"):
        convert("torchvision", "vgg16", vgg13)
    fishnet150 = FishNet(network_planes=FISHNET99["network_planes"], num_res_blks=[2, 4, 8, 4, 2, 2, 2, 2, 2, 4],
                         num_trans_blks=[2, 2, 2, 2, 2, 4], num_cls=10).state_dict()
    with pytest.raises(ConversionError, match=r"into fishnet99: it looks like fishnet150 \(residual blocks "
                                              r"2-4-8-4-2-2-2-2-2-4; fishnet99 has 2-2-6-2-1-1-1-1-2-2\)") as err:
        convert("fishnet", "fishnet99", {f"module.{k}": v for k, v in fishnet150.items()})
    assert len(str(err.value)) < 300


def test_zoo_weights_lists_the_upstream_entries_and_unknown_tags_list_them(env, capsys):
    from zoo.cli import main

    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80 and "resnet20" in out
    for up in imagenet.TABLE:
        row = next(line for line in out.splitlines() if line.split()[:2] == [up.name, up.tag])
        assert f"{up.top1:.2f}%" in row and ("by hand" if up.user_supplied else "remote") in row
    assert "the publisher's ImageNet-1k top-1, not measured here" in out
    assert main(["weights", "vgg16", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {r["tag"] for r in records} == {"imagenet", "imagenet-keras"}
    assert all(r["metrics"]["by"] == "publisher" for r in records)
    with pytest.raises(WeightsError, match=r"Did you mean 'imagenet'.*Available tags for resnet50: imagenet, "
                                           r"imagenet-keras, imagenet-v2"):
        zoo.build("resnet50", weights="imagenett")
    info = zoo.weights_info("vgg19", "imagenet")
    assert info["kind"] == "upstream" and info["state"] == "remote" and info["files"][0]["name"] == "vgg19-dcbb9e9d.pth"


# ---------------------------------------------------------------------------- heavier nets
@pytest.mark.slow
def test_keras_resnet50_full_file_parity(env, monkeypatch, tmp_path):
    legacy = pytest.importorskip("keras.src.legacy.saving.legacy_h5_format")
    import h5py

    from test_convert import _randomize_keras_bn

    src = keras.applications.ResNet50(weights=None, classifier_activation=None)
    _randomize_keras_bn(src)
    path = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    with h5py.File(path, "w") as f:
        legacy.save_weights_to_hdf5_group(f, src)
    _serve(monkeypatch, env, ("resnet50", "imagenet-keras"), path, f"md5:{hashlib.md5(path.read_bytes()).hexdigest()}")
    model = zoo.build("resnet50", weights="imagenet-keras", include_preprocessing=True, progress=False)
    rgb = _rgb(224)
    expected = src(keras.applications.resnet50.preprocess_input(rgb.copy())).numpy()
    assert np.abs(model(rgb).numpy() - expected).max() <= TOL

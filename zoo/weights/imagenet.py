"""Upstream ImageNet weights by name, as data: what torchvision, keras.applications and the FishNet
authors publish for the zoo's families, each row with the facts its publisher gives (URL, hash,
their top-1/top-5, preprocessing) and where they are written.

The rows are in the spirit of torchvision's ``WeightsEnum`` (weights as data): every fact below is
copied from the publisher's own source, cited per table:

- torchvision 0.29.1 (the wheel on PyPI): ``torchvision/models/resnet.py`` (``ResNet18_Weights`` …
  ``ResNet152_Weights``), ``squeezenet.py`` (``SqueezeNet1_0_Weights``, ``SqueezeNet1_1_Weights``),
  ``vgg.py`` (``VGG11_Weights`` … ``VGG19_Weights``): ``url``, ``_metrics["ImageNet-1K"]`` acc@1 /
  acc@5, ``_file_size`` (MB); the hash is the sha256 prefix in the file name (``torch.hub``'s
  ``HASH_REGEX``, checked with ``check_hash=True``). ``vgg*_bn`` are not listed: the zoo's VGG has no
  batch norm. torchvision's ``IMAGENET1K_V1`` is the tag ``imagenet``, ``IMAGENET1K_V2`` ``imagenet-v2``.
- keras.applications (Keras 3.15.1): ``keras/src/applications/resnet.py`` (``BASE_WEIGHTS_PATH``,
  ``WEIGHTS_HASHES["resnet50"]``), ``vgg16.py`` / ``vgg19.py`` (``WEIGHTS_PATH[_NO_TOP]``,
  ``file_hash``, an md5); top-1 / top-5 and size (MB) from https://keras.io/api/applications/.
  Tag ``imagenet-keras``; ResNet50 is built with ``layout="keras"``. Each also has a headless file
  (``…_notop.h5``), used when the request needs no classifier.
- The FishNet authors (github.com/kevin-ssy/FishNet ``README.md``, "Models"): checkpoints on Baidu
  Yun / Dropbox pages, not directly downloadable: ``zoo weights add NAME TAG PATH`` converts a copy
  once and pins its sha256 (:mod:`zoo.weights.upstream`).

Every metric here is the publisher's, not measured by the zoo. Nothing here imports Keras.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from zoo.errors import did_you_mean
from zoo.weights.errors import WeightsError

TORCHVISION = "torchvision 0.29.1 torchvision/models/{module}.py {cls}.{member}"
KERAS_SRC = "Keras 3.15.1 keras/src/applications/{module}.py; metrics: https://keras.io/api/applications/"
FISHNET_SRC = "github.com/kevin-ssy/FishNet README.md, Models"
TV_LICENSE = ("none stated for the weights: torchvision (BSD-3-Clause) says its pre-trained models 'may have their "
              "own licenses or terms and conditions derived from the dataset used for training' (README, "
              "Pre-trained Model License); ImageNet's terms of access apply")
KERAS_LICENSE = ("none stated for the weights in keras.applications' source or docs (Keras itself: Apache-2.0); "
                 "ImageNet's terms of access apply")
FISHNET_LICENSE = "none stated (kevin-ssy/FishNet has no LICENSE file); ImageNet's terms of access apply"
TV_BASE = "https://download.pytorch.org/models/"
KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
PREPROCESSING = {  # what the model expects of raw RGB, beside the normalisation inside it
    "torch": "resize the short side to {resize}, center-crop 224 (torchvision ImageNetClassification); "
             "normalisation inside: (x/255 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]",
    "caffe": "resize to 224x224 (keras.applications); normalisation inside: RGB -> BGR, minus "
             "[103.939, 116.779, 123.68] (imagenet_utils 'caffe' mode)",
}


@dataclass(frozen=True)
class UpstreamFile:
    """One file as published: its name, URL (``None``: not directly downloadable), the publisher's hash
    (``"sha256:<prefix>"``, ``"md5:<hex>"``; ``None``: pinned when added), size and whether it has the
    classifier."""

    name: str
    url: str | None
    hash: str | None
    size_mb: float | None = None
    include_top: bool = True


@dataclass(frozen=True)
class Upstream:
    """Upstream ImageNet weights of a zoo model (see the module docstring)."""

    name: str
    tag: str
    publisher: str
    converter: str  # a source of zoo.weights.convert: torchvision, keras, fishnet
    files: tuple[UpstreamFile, ...]  # the full file first; a headless one may follow
    top1: float | None
    top5: float | None
    preprocessing: str  # a preset of zoo.weights.preprocess: torch, caffe
    source: str
    license: str
    build: Mapping[str, Any] = field(default_factory=dict)  # zoo.build options the converted file fits
    resize: int = 256
    page: str | None = None  # where a user-supplied file is downloaded by hand
    num_classes: int = 1000

    @property
    def key(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def user_supplied(self) -> bool:
        return all(f.url is None for f in self.files)

    def file(self, include_top: bool = True) -> UpstreamFile:
        """The published file for a request with or without the classifier (the full one if no headless)."""
        return next((f for f in self.files if f.include_top == include_top), self.files[0])

    def description(self) -> str:
        metric = "" if self.top1 is None else f" {self.top1}% top-1 / {self.top5}% top-5 (the publisher's figure)."
        return (f"{self.publisher} ImageNet-1k weights, converted on first use.{metric} Preprocessing: "
                f"{PREPROCESSING[self.preprocessing].format(resize=self.resize)}. Source: {self.source}. "
                f"License: {self.license}.")

    def to_json(self) -> dict[str, Any]:
        """A JSON record (``zoo weights --json``)."""
        return {"name": self.name, "tag": self.tag, "publisher": self.publisher, "converter": self.converter,
                "files": [vars(f) for f in self.files], "metrics": {"imagenet_top1": self.top1,
                "imagenet_top5": self.top5, "by": "publisher"}, "preprocessing": self.preprocessing,
                "build": dict(self.build), "source": self.source, "license": self.license, "page": self.page}


def _tv(name: str, file: str, top1: float, top5: float, size: float, module: str, cls: str,
        member: str = "IMAGENET1K_V1", tag: str = "imagenet", resize: int = 256) -> Upstream:
    sha = file.rsplit("-", 1)[1].split(".")[0]  # the sha256 prefix torch.hub checks
    return Upstream(name, tag, "torchvision", "torchvision", (UpstreamFile(file, TV_BASE + file, f"sha256:{sha}", size),),
                    top1, top5, "torch", TORCHVISION.format(module=module, cls=cls, member=member), TV_LICENSE,
                    resize=resize)


def _keras(name: str, module: str, folder: str, top: str, notop: str, top1: float, top5: float, size: float,
           build: Mapping[str, Any] | None = None) -> Upstream:
    stem = f"{name}_weights_tf_dim_ordering_tf_kernels"
    files = (UpstreamFile(f"{stem}.h5", f"{KERAS_BASE}{folder}/{stem}.h5", f"md5:{top}", size),
             UpstreamFile(f"{stem}_notop.h5", f"{KERAS_BASE}{folder}/{stem}_notop.h5", f"md5:{notop}", None, False))
    return Upstream(name, "imagenet-keras", "keras.applications", "keras", files, top1, top5, "caffe",
                    KERAS_SRC.format(module=module), KERAS_LICENSE, build=dict(build or {}))


def _fish(name: str, tag: str, file: str, top1: float, top5: float, page: str) -> Upstream:
    return Upstream(name, tag, "FishNet authors", "fishnet", (UpstreamFile(file, None, None),), top1, top5, "torch",
                    FISHNET_SRC, FISHNET_LICENSE, page=page)


TABLE: tuple[Upstream, ...] = (
    # torchvision/models/resnet.py
    _tv("resnet18", "resnet18-f37072fd.pth", 69.758, 89.078, 44.661, "resnet", "ResNet18_Weights"),
    _tv("resnet34", "resnet34-b627a593.pth", 73.314, 91.420, 83.275, "resnet", "ResNet34_Weights"),
    _tv("resnet50", "resnet50-0676ba61.pth", 76.130, 92.862, 97.781, "resnet", "ResNet50_Weights"),
    _tv("resnet50", "resnet50-11ad3fa6.pth", 80.858, 95.434, 97.79, "resnet", "ResNet50_Weights", "IMAGENET1K_V2",
        "imagenet-v2", 232),
    _tv("resnet101", "resnet101-63fe2227.pth", 77.374, 93.546, 170.511, "resnet", "ResNet101_Weights"),
    _tv("resnet101", "resnet101-cd907fc2.pth", 81.886, 95.780, 170.53, "resnet", "ResNet101_Weights", "IMAGENET1K_V2",
        "imagenet-v2", 232),
    _tv("resnet152", "resnet152-394f9c45.pth", 78.312, 94.046, 230.434, "resnet", "ResNet152_Weights"),
    _tv("resnet152", "resnet152-f82ba261.pth", 82.284, 96.002, 230.474, "resnet", "ResNet152_Weights",
        "IMAGENET1K_V2", "imagenet-v2", 232),
    # torchvision/models/squeezenet.py
    _tv("squeezenet1_0", "squeezenet1_0-b66bff10.pth", 58.092, 80.420, 4.778, "squeezenet", "SqueezeNet1_0_Weights"),
    _tv("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth", 58.178, 80.624, 4.729, "squeezenet", "SqueezeNet1_1_Weights"),
    # torchvision/models/vgg.py
    _tv("vgg11", "vgg11-8a719046.pth", 69.020, 88.628, 506.84, "vgg", "VGG11_Weights"),
    _tv("vgg13", "vgg13-19584684.pth", 69.928, 89.246, 507.545, "vgg", "VGG13_Weights"),
    _tv("vgg16", "vgg16-397923af.pth", 71.592, 90.382, 527.796, "vgg", "VGG16_Weights"),
    _tv("vgg19", "vgg19-dcbb9e9d.pth", 72.376, 90.876, 548.051, "vgg", "VGG19_Weights"),
    # keras/src/applications/resnet.py WEIGHTS_HASHES["resnet50"], vgg16.py, vgg19.py
    _keras("resnet50", "resnet", "resnet", "2cb95161c43110f7111970584f804107", "4d473c1dd8becc155b73f8504c6f6626",
           74.9, 92.1, 98, {"layout": "keras"}),
    _keras("vgg16", "vgg16", "vgg16", "64373286793e3c8b2b4e3219cbf3544b", "6d6bbae143d832006294945121d1f1fc",
           71.3, 90.1, 528),
    _keras("vgg19", "vgg19", "vgg19", "cbe5617147190e668d6c5d5026f83318", "253f8cb515780f3b799900260a226db6",
           71.3, 90.0, 549),
    # kevin-ssy/FishNet README.md: "Models trained without tricks" and "... cosine lr schedule (200 epochs)"
    _fish("fishnet99", "imagenet", "fishnet99_ckpt.tar", 77.41, 93.59,
          "https://www.dropbox.com/s/hvojbdsad5ue7yb/fishnet99_ckpt.tar?dl=0"),
    _fish("fishnet150", "imagenet", "fishnet150_ckpt.tar", 78.14, 93.95,
          "https://www.dropbox.com/s/hjadcef18ln3o2v/fishnet150_ckpt.tar?dl=0"),
    _fish("fishnet150", "imagenet-cosine", "fishnet150_ckpt_welltrained.tar", 79.35, 94.75,
          "https://www.dropbox.com/s/ajy9p6f97y45f1r/fishnet150_ckpt_welltrained.tar?dl=0"),
    _fish("fishnet201", "imagenet-cosine", "fishnet201_ckpt_welltrain.tar", 79.71, 94.79,
          "https://www.dropbox.com/s/kvz2dmxe3fzn10m/fishnet201_ckpt_welltrain.tar?dl=0"),
)
UPSTREAM: dict[tuple[str, str], Upstream] = {(u.name, u.tag): u for u in TABLE}  # tests may add local mirrors


def list_upstream(name: str | None = None) -> list[Upstream]:
    """The upstream entries (only ``name``'s when given), in table order."""
    key = None if name is None else name.strip().lower()
    return [u for (n, _), u in UPSTREAM.items() if key is None or n == key]


def find_upstream(name: str, tag: str) -> Upstream | None:
    """The upstream entry ``name:tag``, or ``None``."""
    return UPSTREAM.get((name.strip().lower(), tag))


def get_upstream(name: str, tag: str) -> Upstream:
    """The upstream entry ``name:tag``; an unknown one lists the model's upstream tags."""
    found = find_upstream(name, tag)
    if found is None:
        tags = [u.tag for u in list_upstream(name)]
        raise WeightsError(f"no upstream weights {tag!r} for {name}.{did_you_mean(tag, tags)} Upstream tags: "
                           f"{', '.join(tags) or 'none'}.")
    return found

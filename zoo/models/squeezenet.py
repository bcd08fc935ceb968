"""SqueezeNet: Iandola, Han, Moskewicz, Ashraf, Dally & Keutzer 2016, "SqueezeNet: AlexNet-level
accuracy with 50x fewer parameters and <0.5MB model size" (arXiv 1602.07360).

- Fire module (§3.2): squeeze 1×1·s + ReLU, then expand 1×1·e1 and 3×3·e3 (padded by 1) in parallel
  on the squeeze output, each + ReLU, concatenated [expand1x1, expand3x3] (e1 + e3 channels).
- SqueezeNet 1.0 (§3.3, Table 1): conv1 7×7·96 stride 2 → max-pool → fire2–fire4 → max-pool →
  fire5–fire8 → max-pool → fire9 → dropout 50% → conv10 1×1·classes → ReLU → global average.
- SqueezeNet 1.1 (the SqueezeNet repository's v1.1, 2.4× fewer FLOPs): conv1 3×3·64 stride 2 and the
  pools moved earlier, after conv1, fire3 and fire5; same fire widths.
- Bypass (§6, Figure 2): ``simple`` adds identity shortcuts around fire3, fire5, fire7 and fire9
  (whose input and output widths agree, so no weights are added); ``complex`` also adds 1×1
  convolutions (bias, no activation) as shortcuts of fire2, fire4, fire6 and fire8. The sum follows
  the fire module's ReLUs and is not activated again.

The layout is torchvision's, the layout of the published PyTorch weights: every convolution has a
bias, conv1 is unpadded and the 3×3 stride-2 max-pools round up (PyTorch ``ceil_mode=True``), which
the shared factory reproduces with explicit after-padding (exact for their non-negative inputs).
Layer names: ``conv1``, ``fire{i}_squeeze1x1``, ``fire{i}_expand1x1``, ``fire{i}_expand3x3``,
``fire{i}_bypass`` (complex), ``conv10``; torchvision's ``features.{j}.squeeze`` etc. map onto
them in order (``features.0`` is conv1, ``classifier.1`` is conv10).

Sites: ``stem`` (conv1's stride, a conv site with the published unpadded kernel), ``pool1`` –
``pool3`` (the 3×3/2 ceil-mode max-pools). Option ``stem="cifar"`` makes ``stem`` and ``pool1``
default to ``none`` (total stride 4 instead of 16), for 32×32 inputs such as CIFAR: conv1 then
keeps the resolution ("same" padding) and fire9 sees 8×8 instead of 2×2.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import keras
from keras import layers

from zoo.layers.downsample import Site, SitePlan, conv_site, pool_site
from zoo.models.registry import Family, Feature, Trunk, register_model

PAPER = "Iandola et al. 2016, SqueezeNet (arXiv 1602.07360)"


@dataclass(frozen=True)
class SqueezeNetConfig:
    """conv1 (kernel, filters), then the network as a sequence of fire modules and pools.

    ``layout`` items are ``(squeeze, expand1x1, expand3x3)`` for a fire module (numbered from 2 as in
    the paper) or ``"pool"`` for a 3×3/2 ceil-mode max-pool site.
    """

    conv1: tuple[int, int]
    layout: tuple[tuple[int, int, int] | str, ...]


F16, F32, F48, F64 = (16, 64, 64), (32, 128, 128), (48, 192, 192), (64, 256, 256)
CONFIGS = {
    "1_0": SqueezeNetConfig((7, 96), ("pool", F16, F16, F32, "pool", F32, F48, F48, F64, "pool", F64)),
    "1_1": SqueezeNetConfig((3, 64), ("pool", F16, F16, "pool", F32, F32, "pool", F48, F48, F64, F64)),
}
SIMPLE_BYPASS = (3, 5, 7, 9)  # identity shortcuts (§6)
COMPLEX_BYPASS = (2, 4, 6, 8)  # 1×1 convolution shortcuts, in addition to the simple ones


def squeezenet_sites(cfg: SqueezeNetConfig, *, stem: str = "imagenet", **_) -> list[Site]:
    off = "none" if stem == "cifar" else None
    k = cfg.conv1[0]
    sites = [Site("stem", "conv", off or "conv", f"conv1 {k}x{k}/2, unpadded"),
             Site("pool1", "pool", off or "max", "3x3/2 max-pool (ceil mode) after conv1")]
    fire, pool = 1, 1
    for item in cfg.layout[1:]:
        if item == "pool":
            pool += 1
            sites.append(Site(f"pool{pool}", "pool", "max", f"3x3/2 max-pool (ceil mode) after fire{fire}"))
        else:
            fire += 1
    return sites


def _conv(x, *, filters: int, kernel_size: int, strides: int = 1, padding: str = "same", dilation_rate: int = 1,
          activation: str | None = "relu", kernel_initializer="he_normal", name: str):
    """A convolution with bias (+ ReLU), as every SqueezeNet convolution."""
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
                         activation=activation, kernel_initializer=kernel_initializer, name=name)(x)


def fire(x, squeeze: int, expand1x1: int, expand3x3: int, *, dilation: int = 1, name: str):
    """The fire module (§3.2); the 3×3 expand is padded by its dilation ("same"), as torchvision's by 1."""
    s = _conv(x, filters=squeeze, kernel_size=1, name=f"{name}_squeeze1x1")
    e1 = _conv(s, filters=expand1x1, kernel_size=1, name=f"{name}_expand1x1")
    e3 = _conv(s, filters=expand3x3, kernel_size=3, dilation_rate=dilation, name=f"{name}_expand3x3")
    return layers.Concatenate(name=f"{name}_concat")([e1, e3])


def squeezenet_trunk(inputs, cfg: SqueezeNetConfig, plan: SitePlan, *,
                     bypass: Literal["none", "simple", "complex"] = "none",
                     stem: Literal["imagenet", "cifar"] = "imagenet", class_relu: bool = True) -> Trunk:
    """conv1 → fire modules and pools → (head: dropout, conv10, ReLU, global average).

    ``bypass``: ``none`` (the published 1.0 / 1.1), ``simple`` or ``complex`` (§6). ``stem``:
    ``imagenet`` or ``cifar`` (no downsampling at ``stem`` and ``pool1`` by default, for 32×32).
    ``class_relu=False`` drops the published ReLU on the class scores (conv10), which can die
    (every score 0, no gradient) early in a short high-learning-rate schedule.
    """
    k, width = cfg.conv1
    choice, dilation = plan.take("stem")
    x = conv_site(inputs, choice, conv_fn=partial(_conv, filters=width, kernel_size=k), kernel=k, pad=0,
                  name="conv1", dilation=dilation)
    features, pool, number = [], 0, 1
    last = "conv1"
    for item in cfg.layout:
        if item == "pool":
            features.append(Feature(last, x, plan.reduction))
            pool += 1
            choice, _ = plan.take(f"pool{pool}")
            x = pool_site(x, choice, conv_fn=_conv, kernel=3, stride=2, pad="ceil", name=f"pool{pool}")
            continue
        number += 1
        last = name = f"fire{number}"
        y = fire(x, *item, dilation=plan.dilation, name=name)
        if bypass != "none" and number in SIMPLE_BYPASS:
            y = layers.Add(name=f"{name}_add")([x, y])
        elif bypass == "complex" and number in COMPLEX_BYPASS:
            short = _conv(x, filters=y.shape[-1], kernel_size=1, activation=None, name=f"{name}_bypass")
            y = layers.Add(name=f"{name}_add")([short, y])
        x = y
    features.append(Feature(last, x, plan.reduction))

    def head(x, num_classes: int, dropout: float):
        x = layers.Dropout(dropout, name="head_dropout")(x) if dropout else x
        # torchvision initialises the class convolution with N(0, 0.01)
        x = _conv(x, filters=num_classes, kernel_size=1, kernel_initializer=keras.initializers.RandomNormal(0.0, 0.01),
                  activation="relu" if class_relu else None, name="conv10")
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)

    return Trunk(features, head, default_dropout=0.5)


# min_final_size=2: the unpadded conv1 and the ceil-mode pools need a little more than the total stride
FAMILY = Family("squeezenet", squeezenet_sites, squeezenet_trunk, PAPER, min_final_size=2)

VERSIONS = {  # version: (trainable params, GFLOPs mult-adds at 224, top-1, top-5 of the torchvision weights)
    "1_0": (1_248_424, 0.82, 58.09, 80.42),
    "1_1": (1_235_496, 0.35, 58.18, 80.62),
}
PAPER_ACCURACY = {  # SqueezeNet 1.0 ImageNet top-1 / top-5, Table 2 (no bypass) and Table 3 (bypass)
    "none": (57.5, 80.3), "simple": (60.4, 82.5), "complex": (58.8, None),
}

for _version, (_params, _gflops, _top1, _top5) in VERSIONS.items():
    for _bypass in ("none", "simple", "complex"):
        _name = f"squeezenet{_version}" + ("" if _bypass == "none" else f"_{_bypass}_bypass")
        _published = {}
        if _bypass != "complex":  # identity bypasses add no weights
            _published["params"] = _params
        if _bypass == "none":
            _published.update(gflops=_gflops, imagenet_top1=_top1, imagenet_top5=_top5)
        if _version == "1_0":
            _top1_paper, _top5_paper = PAPER_ACCURACY[_bypass]
            _published["imagenet_top1_paper"] = _top1_paper
            if _top5_paper is not None:
                _published["imagenet_top5_paper"] = _top5_paper
        register_model(
            _name, FAMILY, CONFIGS[_version], input_shape=(224, 224, 3), num_classes=1000, published=_published,
            defaults={} if _bypass == "none" else {"bypass": _bypass},
            description=f"SqueezeNet {_version.replace('_', '.')}"
                        + ("" if _bypass == "none" else f" with {_bypass} bypass (Iandola 2016, §6)"),
        )

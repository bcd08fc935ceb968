"""All-Convolutional Net: Springenberg, Dosovitskiy, Brox & Riedmiller 2015, "Striving for
Simplicity: The All Convolutional Net" (arXiv 1412.6806).

Base models A, B and C (Table 1) and their three derivatives (§3.1, Table 2):

- ``cnn_x``: the base model: two stages, each ended by a 3×3 stride-2 max-pool (a pool site);
- ``strided_cnn_x``: the pools removed, the stage's last convolution strided (a conv site);
- ``convpool_cnn_x``: an extra 3×3 convolution of the stage's width before each pool;
- ``all_cnn_x``: that extra convolution strided instead of pooled.

ConvPool and All-CNN share the structure and differ only in the site's choice, so
``build("all_cnn_c", downsample="max")`` *is* ConvPool-CNN-C. The head (Table 1) is 3×3·192
(unpadded), 1×1·192, 1×1·classes, each with ReLU, global average. Dropout 20% on the input and 50%
after each downsampling (§3.2.1). The stride-2 convolution that replaces a pool keeps its ReLU.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from keras import layers

from zoo.layers.blocks import conv_act
from zoo.layers.downsample import Site, SitePlan, conv_site, pool_site
from zoo.models.registry import Family, Feature, Trunk, register_model

PAPER = "Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net (arXiv 1412.6806)"


@dataclass(frozen=True)
class AllConvConfig:
    """Stage convolutions as (kernel, filters) and where the downsampling sits.

    ``site``: ``"pool"`` — a pool after the stage (base model); ``"last"`` — the stage's last
    convolution carries the site (Strided-CNN); ``"extra"`` — an extra 3×3 convolution of the
    stage's width carries it (ConvPool-CNN / All-CNN).
    """

    stages: tuple[tuple[tuple[int, int], ...], ...]
    site: Literal["pool", "last", "extra"]
    default: str


BASE = {
    "a": (((5, 96),), ((5, 192),)),
    "b": (((5, 96), (1, 96)), ((5, 192), (1, 192))),
    "c": (((3, 96), (3, 96)), ((3, 192), (3, 192))),
}

DERIVATIVES = {  # name prefix: (site kind, published choice)
    "cnn": ("pool", "max"),
    "strided_cnn": ("last", "conv"),
    "convpool_cnn": ("extra", "max"),
    "all_cnn": ("extra", "conv"),
}


def allconv_sites(cfg: AllConvConfig) -> list[Site]:
    role = "pool" if cfg.site == "pool" else "conv"
    doc = {"pool": "3x3/2 max-pool after stage {i}", "last": "last conv of stage {i}, strided",
           "extra": "extra 3x3 conv after stage {i}"}[cfg.site]
    return [Site(f"pool{i}", role, cfg.default, doc.format(i=i)) for i in range(1, len(cfg.stages) + 1)]


def _conv(x, *, filters: int, kernel_size: int, strides: int = 1, padding: str = "same", dilation_rate: int = 1,
          name: str):
    return conv_act(x, filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate, name=name)


def _stage(x, convs, cfg: AllConvConfig, plan: SitePlan, site: str):
    carried = convs[-1] if cfg.site == "last" else (3, convs[-1][1])
    plain = convs[:-1] if cfg.site == "last" else convs
    for j, (k, f) in enumerate(plain, 1):
        x = _conv(x, filters=f, kernel_size=k, dilation_rate=plan.dilation, name=f"{site}_conv{j}")
    features = x
    choice, dilation = plan.take(site)
    if cfg.site == "pool":
        conv_fn = partial(_conv, kernel_size=3)
        x = pool_site(x, choice, conv_fn=conv_fn, kernel=3, stride=2, pad=1, name=site)
    else:
        k, f = carried
        conv_fn = partial(_conv, filters=f, kernel_size=k)
        x = conv_site(x, choice, conv_fn=conv_fn, kernel=k, name=f"{site}_conv{len(plain) + 1}", dilation=dilation)
    return x, features


def allconv_trunk(inputs, cfg: AllConvConfig, plan: SitePlan, *, dropout: float | None = None,
                  input_dropout: float = 0.2, class_relu: bool = True) -> Trunk:
    """Stages → head convolutions. ``input_dropout`` (20%) and ``dropout`` (50%) follow §3.2.1;
    ``class_relu`` keeps the paper's ReLU on the class-score convolution (Table 1)."""
    drop = 0.5 if dropout is None else dropout
    x = layers.Dropout(input_dropout, name="input_dropout")(inputs) if input_dropout else inputs
    features = []
    for i, convs in enumerate(cfg.stages, 1):
        reduction = plan.reduction
        x, before = _stage(x, convs, cfg, plan, f"pool{i}")
        features.append(Feature(f"stage{i}", before, reduction))
        x = layers.Dropout(drop, name=f"pool{i}_dropout")(x) if drop else x
    x = conv_act(x, 192, 3, padding="valid", dilation_rate=plan.dilation, name="head_conv1")
    x = conv_act(x, 192, 1, name="head_conv2")
    features.append(Feature("head", x, plan.reduction))

    def head(x, num_classes: int, _dropout: float):
        x = conv_act(x, num_classes, 1, activation="relu" if class_relu else None, name="class_conv")
        return layers.GlobalAveragePooling2D(name="avg_pool")(x)

    return Trunk(features, head, default_dropout=0.0)


FAMILY = Family("allconv", lambda cfg, **_: allconv_sites(cfg), allconv_trunk, PAPER, min_final_size=3)

PARAMS = {  # trainable parameters with 10 classes, Springenberg et al. 2015, Table 2 / architectures.md
    "cnn_a": 839_242, "strided_cnn_a": 839_242, "convpool_cnn_a": 1_254_250, "all_cnn_a": 1_254_250,
    "cnn_b": 885_610, "strided_cnn_b": 885_610, "convpool_cnn_b": 1_300_618, "all_cnn_b": 1_300_618,
    "cnn_c": 954_730, "strided_cnn_c": 954_730, "convpool_cnn_c": 1_369_738, "all_cnn_c": 1_369_738,
}
ERRORS = {  # CIFAR-10 test error (%) without augmentation, Table 2 (All-CNN-C also 7.25 with augmentation)
    "cnn_a": 12.47, "strided_cnn_a": 13.46, "convpool_cnn_a": 10.21, "all_cnn_a": 10.30,
    "cnn_b": 10.20, "strided_cnn_b": 10.98, "convpool_cnn_b": 9.33, "all_cnn_b": 9.10,
    "cnn_c": 9.74, "strided_cnn_c": 10.19, "convpool_cnn_c": 9.31, "all_cnn_c": 9.08,
}

for _prefix, (_site, _default) in DERIVATIVES.items():
    for _letter, _stages in BASE.items():
        _name = f"{_prefix}_{_letter}"
        register_model(
            _name, FAMILY, AllConvConfig(_stages, _site, _default), input_shape=(32, 32, 3), num_classes=10,
            published={"params": PARAMS[_name], "cifar10_error": ERRORS[_name],
                       **({"params_100": 1_387_108, "cifar100_error": 33.71} if _name == "all_cnn_c" else {})},
            description=f"{_prefix.replace('_', '-')}-{_letter.upper()} (Springenberg 2015, Table 2)",
        )

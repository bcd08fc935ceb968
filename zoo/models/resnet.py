"""ResNet: He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition" (arXiv 1512.03385).

- ImageNet (§3.4, Table 1): 7×7·64 stride-2 stem + 3×3 stride-2 max-pool, four stages of basic
  blocks (18, 34) or bottlenecks (50, 101, 152), stride 2 at the first block of stages 3–5,
  projection shortcuts (option B) where the shape changes. The stride sits on the bottleneck's
  3×3 as in torchvision ("ResNet-B", He et al. 2019 §4.1); ``layout="keras"`` puts it on the first
  1×1 and gives every convolution a bias, as ``keras.applications.ResNet50`` does.
- CIFAR (§4.2): 3×3·16 stem, three stages of n basic blocks with 16, 32, 64 filters, depth 6n+2,
  option A shortcuts (identity, subsampled, zero-padded channels) or option B projections.

Sites: ``stem`` (the stem's strided convolution), ``stem_pool``, ``stage3``…``stage5`` (ImageNet) or
``stage2``, ``stage3`` (CIFAR) — the strided convolution of each stage's first block — and the
matching ``shortcutN`` sites. Bag-of-Tricks stems: ``stem="deep"`` (ResNet-C: three 3×3
convolutions 32, 32, 64) and ``downsample={"shortcut*": "avg"}`` (ResNet-D).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from keras import layers

from zoo.errors import ZooError
from zoo.layers.blocks import conv_bn_act
from zoo.layers.downsample import Choice, Site, SitePlan, conv_site, out_size, pool_site, shortcut_site
from zoo.layers.ops import ZeroChannelPad
from zoo.models.registry import Family, Feature, Trunk, register_model

PAPER = "He et al. 2016, Deep Residual Learning for Image Recognition (arXiv 1512.03385)"
KERAS_BN_EPSILON = 1.001e-5


@dataclass(frozen=True)
class ResNetConfig:
    block: Literal["basic", "bottleneck"]
    layers: tuple[int, ...]
    widths: tuple[int, ...]
    kind: Literal["imagenet", "cifar"]


@dataclass(frozen=True)
class Layout:
    """Per-build conventions: where the bottleneck's stride sits, conv biases, BN epsilon, shortcut option."""

    stride_on: Literal["3x3", "1x1"] = "3x3"
    bias: bool = False
    bn_epsilon: float = 1e-5
    shortcut: Literal["A", "B"] = "B"


def _first_stage(cfg: ResNetConfig) -> int:
    return 2 if cfg.kind == "imagenet" else 1


def resnet_sites(cfg: ResNetConfig, *, stem: str = "classic", **_) -> list[Site]:
    first = _first_stage(cfg)
    sites = []
    if cfg.kind == "imagenet":
        on = "none" if stem == "cifar" else None
        sites += [Site("stem", "conv", on or "conv", "stem's first convolution, stride 2"),
                  Site("stem_pool", "pool", on or "max", "3x3/2 max-pool after the stem")]
    for i in range(first + 1, first + len(cfg.layers)):
        sites.append(Site(f"stage{i}", "conv", "conv", f"strided conv in stage {i}'s first block"))
        sites.append(Site(f"shortcut{i}", "shortcut", "conv", f"shortcut of stage {i}'s first block", follows=f"stage{i}"))
    return sites


def _cbr(x, *, filters: int, kernel_size: int, strides: int = 1, padding: str = "same", dilation_rate: int = 1,
         activation: str | None = "relu", layout: Layout, name: str):
    return conv_bn_act(x, filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
                       use_bias=layout.bias, activation=activation, bn_epsilon=layout.bn_epsilon, name=name)


def _stem(x, cfg: ResNetConfig, plan: SitePlan, stem: str, layout: Layout):
    """The stem; returns its output before and after the stem pool (timm's first feature is the former)."""
    if cfg.kind == "cifar":
        x = _cbr(x, filters=16, kernel_size=3, layout=layout, name="stem")
        return (x, plan.reduction), x
    choice, dilation = plan.take("stem")
    if stem == "deep":  # ResNet-C, He et al. 2019 §4.1
        x = conv_site(x, choice, conv_fn=partial(_cbr, filters=32, kernel_size=3, layout=layout), kernel=3,
                      name="stem1", dilation=dilation)
        x = _cbr(x, filters=32, kernel_size=3, layout=layout, name="stem2")
        x = _cbr(x, filters=64, kernel_size=3, layout=layout, name="stem3")
    else:
        x = conv_site(x, choice, conv_fn=partial(_cbr, filters=64, kernel_size=7, layout=layout), kernel=7,
                      name="stem", dilation=dilation)
    reduction, before_pool = plan.reduction, x
    choice, _ = plan.take("stem_pool")
    return (before_pool, reduction), pool_site(x, choice, conv_fn=partial(_cbr, layout=layout), kernel=3, stride=2, pad=1, name="stem_pool")


def _projection(x, *, filters: int, layout: Layout, strides: int = 1, name: str):
    return _cbr(x, filters=filters, kernel_size=1, strides=strides, padding="valid", activation=None,
                layout=layout, name=name)


def _shortcut(x, out_channels: int, site: str | None, plan: SitePlan, target, layout: Layout, name: str):
    """Identity, option-A (subsample + zero channels) or option-B (1×1 projection) shortcut."""
    choice = plan.take(site)[0] if site else Choice("none")
    in_channels = x.shape[-1]
    if choice.kind == "none" and in_channels == out_channels:
        return x
    option_a = layout.shortcut == "A" and choice.kind != "s2d"
    project = None if option_a else partial(_projection, filters=out_channels, layout=layout)
    if choice.kind == "none":
        x = project(x, name=f"{name}_proj") if project else x
    else:
        x = shortcut_site(x, choice, target=target, project=project, name=f"{name}_shortcut")
    if option_a and in_channels != out_channels:
        x = ZeroChannelPad(out_channels - in_channels, name=f"{name}_shortcut_pad")(x)
    return x


def _basic(x, width: int, site: str | None, plan: SitePlan, layout: Layout, name: str):
    dilation = plan.dilation
    target = out_size(x.shape[1], 3, 2, 1)
    if site:
        choice, dilation = plan.take(site)
        y = conv_site(x, choice, conv_fn=partial(_cbr, filters=width, kernel_size=3, layout=layout), kernel=3,
                      name=f"{name}_conv1", dilation=dilation)
    else:
        y = _cbr(x, filters=width, kernel_size=3, dilation_rate=dilation, layout=layout, name=f"{name}_conv1")
    y = _cbr(y, filters=width, kernel_size=3, dilation_rate=plan.dilation, activation=None, layout=layout,
             name=f"{name}_conv2")
    short = _shortcut(x, width, site and site.replace("stage", "shortcut"), plan, target, layout, name)
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([short, y]))


def _bottleneck(x, width: int, site: str | None, plan: SitePlan, layout: Layout, name: str):
    dilation = plan.dilation
    target = out_size(x.shape[1], 3, 2, 1)
    choice = None
    if site:
        choice, dilation = plan.take(site)
    strided_1x1 = layout.stride_on == "1x1" and choice is not None
    if strided_1x1:
        y = conv_site(x, choice, conv_fn=partial(_cbr, filters=width, kernel_size=1, layout=layout), kernel=1,
                      name=f"{name}_conv1", dilation=1)
    else:
        y = _cbr(x, filters=width, kernel_size=1, layout=layout, name=f"{name}_conv1")
    if choice is not None and not strided_1x1:
        y = conv_site(y, choice, conv_fn=partial(_cbr, filters=width, kernel_size=3, layout=layout), kernel=3,
                      name=f"{name}_conv2", dilation=dilation)
    else:
        y = _cbr(y, filters=width, kernel_size=3, dilation_rate=plan.dilation if choice is None else dilation,
                 layout=layout, name=f"{name}_conv2")
    y = _cbr(y, filters=4 * width, kernel_size=1, activation=None, layout=layout, name=f"{name}_conv3")
    short = _shortcut(x, 4 * width, site and site.replace("stage", "shortcut"), plan, target, layout, name)
    return layers.Activation("relu", name=f"{name}_out")(layers.Add(name=f"{name}_add")([short, y]))


def resnet_trunk(inputs, cfg: ResNetConfig, plan: SitePlan, *, stem: Literal["classic", "deep", "cifar"] = "classic",
                 shortcut: Literal["A", "B"] | None = None, layout: Literal["torchvision", "keras"] = "torchvision") -> Trunk:
    """Stem → stages → (head: global average, fully connected).

    ``stem``: ImageNet models only — ``classic`` (7×7/2 + max-pool), ``deep`` (ResNet-C) or
    ``cifar`` (no stem downsampling, for 32×32 inputs). ``shortcut``: ``"A"`` (CIFAR default) or
    ``"B"`` (ImageNet default). ``layout``: ``"keras"`` for keras.applications' conventions.
    """
    if cfg.kind == "cifar" and stem != "classic":
        raise ZooError(f"stem={stem!r} applies to the ImageNet ResNets; the CIFAR ResNets have a fixed 3x3 stem.")
    lay = Layout(stride_on="1x1" if layout == "keras" else "3x3", bias=layout == "keras",
                 bn_epsilon=KERAS_BN_EPSILON if layout == "keras" else 1e-5,
                 shortcut=shortcut or ("A" if cfg.kind == "cifar" else "B"))
    block = _basic if cfg.block == "basic" else _bottleneck
    (stem_out, stem_reduction), x = _stem(inputs, cfg, plan, stem, lay)
    features = [Feature("stem", stem_out, stem_reduction)]
    first = _first_stage(cfg)
    for s, (n, width) in enumerate(zip(cfg.layers, cfg.widths)):
        stage = first + s
        for b in range(1, n + 1):
            site = f"stage{stage}" if b == 1 and s > 0 else None
            x = block(x, width, site, plan, lay, f"stage{stage}_block{b}")
        features.append(Feature(f"stage{stage}", x, plan.reduction))

    def head(x, num_classes: int, dropout: float):
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x) if dropout else x
        return layers.Dense(num_classes, name="fc")(x)

    return Trunk(features, head)


FAMILY = Family("resnet", resnet_sites, resnet_trunk, PAPER)

IMAGENET = {  # name: (block, layers, trainable params, GFLOPs mult-adds, top-1 error 10-crop), Table 3/4
    "resnet18": ("basic", (2, 2, 2, 2), 11_689_512, 1.8, 27.88),
    "resnet34": ("basic", (3, 4, 6, 3), 21_797_672, 3.6, 25.03),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 25_557_032, 3.8, 22.85),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 44_549_160, 7.6, 21.75),
    "resnet152": ("bottleneck", (3, 8, 36, 3), 60_192_808, 11.3, 21.43),
}
CIFAR = {  # name: (n, option-A params, option-B params, CIFAR-10 error), Table 6
    "resnet20": (3, 269_722, 272_474, 8.75),
    "resnet32": (5, 464_154, 466_906, 7.51),
    "resnet44": (7, 658_586, 661_338, 7.17),
    "resnet56": (9, 853_018, 855_770, 6.97),
    "resnet110": (18, 1_727_962, 1_730_714, 6.43),
    "resnet1202": (200, 19_421_274, None, 7.93),
}

for _name, (_block, _layers, _params, _gflops, _err) in IMAGENET.items():
    register_model(_name, FAMILY, ResNetConfig(_block, _layers, (64, 128, 256, 512), "imagenet"),
                   input_shape=(224, 224, 3), num_classes=1000,
                   published={"params": _params, "gflops": _gflops, "imagenet_top1_error": _err},
                   description=f"ResNet-{_name[6:]} for ImageNet (He 2016, Table 1)")
for _name, (_n, _pa, _pb, _err) in CIFAR.items():
    register_model(_name, FAMILY, ResNetConfig("basic", (_n, _n, _n), (16, 32, 64), "cifar"),
                   input_shape=(32, 32, 3), num_classes=10,
                   published={"params": _pa, **({"params_option_b": _pb} if _pb else {}), "cifar10_error": _err},
                   description=f"ResNet-{_name[6:]} for CIFAR-10 (He 2016, §4.2), option A shortcuts")

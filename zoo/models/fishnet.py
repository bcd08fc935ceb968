"""FishNet: Sun, Pang, Shi, Yan & Ouyang 2018, "FishNet: A Versatile Backbone for Image, Region, and
Pixel Level Prediction" (NeurIPS 2018; official PyTorch code kevin-ssy/FishNet).

The network (§3, Figure 2; the official ``Fish`` module with 3 down- and 3 up-sampling stages):

1. Stem: 3×3 conv-BN-ReLU 3→32 stride 2, 32→32, 32→64, then a 3×3/2 max-pool (padding 1) → f0.
2. Tail (§3.1): residual stages 64→128, 128→256, 256→512, each followed by a 2×2/2 max-pool
   → f1, f2, f3.
3. Bridge: a score branch BN-ReLU-1×1 (512→256)-BN-ReLU-1×1 (256→1024, bias) = F; an SE-like
   attention on F (BN-ReLU-global average-1×1 1024→32-ReLU-1×1 32→512-sigmoid = a); a residual stage
   1024→512 on F; ``f4 = stage(F)·a + a``.
4. Body (§3.2, up-sampling-refinement): a residual stage whose first block's shortcut is the
   channel-group sum r(x) (k = in/out, Eq. 3; k = 1 is the identity) and whose convolutions dilate
   by 1, 2, 4, then nearest ×2 up-sampling, concatenated ``[trunk, transfer]`` with a transfer stack
   (blocks c→c) of f2, f1, f0 → 768, 512, 320 channels.
5. Head (§3.3, down-sampling-refinement): a residual stage (same width), a 2×2/2 max-pool,
   concatenated with a transfer stack of the body output of that resolution (and finally of f4)
   → 832, 1600, 2112 channels.
6. Classifier: BN-ReLU-1×1 (2112→1056)-BN-ReLU-global average-1×1 (1056→classes, bias).

Blocks are pre-activation bottlenecks without biases: BN-ReLU-1×1 (→out/4)-BN-ReLU-3×3 (dilation
d, padding d)-BN-ReLU-1×1 (→out), added to the shortcut (no activation after the sum); the shortcut
is r(x) in the first block of a body stage, BN-ReLU-1×1 where in ≠ out, the identity otherwise.

**Layer names** follow the authors' checkpoint: a state-dict key ``module.<path>.<param>`` belongs to
the Keras layer ``<path>`` with ``fish.fish.`` shortened to ``fish`` and dots turned into
underscores — ``module.fish.fish.2.0.1.bn1.weight`` → layer ``fish2_0_1_bn1`` (stage 2, sub-module
0 = residual stack, block 1); ``…shortcut.0``/``.2`` → ``…_shortcut_0`` (BN) / ``…_shortcut_2``
(conv); the bridge's score branch ``fish3_0_0``/``fish3_0_2``/``fish3_0_3``/``fish3_1``, its
residual stack ``fish3_2_*``, its attention ``fish3_3_0_0``/``_3``/``_5``; transfer stacks are
sub-module 1 (``fish5_1_0_conv1``); the classifier ``fish9_3_0``/``_2``/``_3`` and ``fish9_4_1``;
the stem ``conv1_0`` (conv), ``conv1_1`` (BN), … ``conv3_1``. Convolution kernels transpose
(O, I, kh, kw) → (kh, kw, I, O); BN ``weight, bias, running_mean, running_var`` are
``gamma, beta, moving_mean, moving_variance``. Every padding is symmetric as in PyTorch.

Sites: ``stem`` (conv1's stride, a conv site), ``stem_pool`` (pool1), ``tail1``–``tail3`` and
``head1``–``head3`` (the 2×2/2 max-pools). Up-sampling is not a site. ``head{i}`` *mirrors*
``tail{i}`` (``Site.follows``): the head pool must restore the resolution the tail pool left, for the
concatenation, so it is ``none`` exactly when ``tail{i}`` is, and it does not add to the total stride
(32). The up-sampling that mirrors ``tail{i}`` is skipped with it. So ``output_stride`` (16, 8, …)
works: the last tail pools become ``none``, their mirrored up-sampling and head pools vanish, and
every convolution at a level whose resolution grew dilates by that factor (on top of the body's own
dilations), which keeps each receptive field in input pixels. The input must be a multiple of the
total stride (the concatenations). ``stem="cifar"`` makes ``stem`` and ``stem_pool`` default to
``none``: a 32×32 input gives f0 at 32, f3 at 4 and the classifier input at 4×4.

Features: ``stem`` (f0), ``tail1``–``tail3``, ``bridge`` (f4), ``body1``–``body3``, ``head1``–``head3``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import keras
from keras import layers

from zoo.layers.blocks import batch_norm
from zoo.layers.downsample import Site, SitePlan, conv_site, pool_site
from zoo.layers.ops import ChannelGroupSum
from zoo.models.registry import Family, Feature, Trunk, register_model

PAPER = "Sun et al. 2018, FishNet: A Versatile Backbone for Image, Region, and Pixel Level Prediction (NeurIPS)"
PLANES = (64, 128, 256, 512, 512, 512, 384, 256, 320, 832, 1600)  # stem, then stages 0..9 (official network_planes)
# the official init: N(0, sqrt(2 / (k·k·out))), He et al. 2015 with fan-out
KERNEL_INIT = keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


@dataclass(frozen=True)
class FishNetConfig:
    """The official ``num_res_blks`` (stages 0–9: tail 0–2, bridge 3, body 4–6, head 7–9) and
    ``num_trans_blks`` (transfer stacks of stages 4–9); widths are :data:`PLANES`."""

    res_blocks: tuple[int, ...]
    trans_blocks: tuple[int, ...]
    planes: tuple[int, ...] = PLANES


def fishnet_sites(cfg: FishNetConfig, *, stem: str = "imagenet", **_) -> list[Site]:
    off = "none" if stem == "cifar" else None
    sites = [Site("stem", "conv", off or "conv", "first stem conv 3x3/2 (conv1)"),
             Site("stem_pool", "pool", off or "max", "3x3/2 max-pool after the stem (pool1)")]
    sites += [Site(f"tail{i}", "pool", "max", f"2x2/2 max-pool after tail stage {i}") for i in (1, 2, 3)]
    sites += [Site(f"head{i}", "pool", "max", f"2x2/2 max-pool of head stage {i}, mirrors tail{i} for the concatenation",
                   follows=f"tail{i}") for i in (1, 2, 3)]
    return sites


# ---------------------------------------------------------------- layers
def _conv(x, filters: int, kernel_size: int = 1, *, strides: int = 1, padding: str = "same", dilation_rate: int = 1,
          use_bias: bool = False, name: str):
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
                         use_bias=use_bias, kernel_initializer=KERNEL_INIT, name=name)(x)


def _bn_relu(x, bn: str, relu: str):
    return layers.Activation("relu", name=relu)(batch_norm(x, bn))


def _stem_unit(x, *, filters: int, kernel_size: int = 3, strides: int = 1, padding: str = "same",
               dilation_rate: int = 1, name: str):
    """conv-BN-ReLU, the official ``_conv_bn_relu`` (``conv1.0`` conv, ``conv1.1`` BN)."""
    x = _conv(x, filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate, name=f"{name}_0")
    return _bn_relu(x, f"{name}_1", f"{name}_2")


def _pre_act_unit(x, *, filters: int, kernel_size: int, strides: int = 1, padding: str = "same",
                  dilation_rate: int = 1, name: str):
    """BN-ReLU-conv: the learned convolution of the ``conv``/``s2d`` choices at tail and head pools."""
    x = _bn_relu(x, f"{name}_bn", f"{name}_relu")
    return _conv(x, filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate, name=name)


def bottleneck(x, out: int, *, dilation: int = 1, k: int | None = None, name: str):
    """Pre-activation bottleneck (official ``Bottleneck``). ``k``: r(x) shortcut (up-sampling mode)."""
    width = out // 4
    y = _conv(_bn_relu(x, f"{name}_bn1", f"{name}_relu1"), width, 1, name=f"{name}_conv1")
    y = _conv(_bn_relu(y, f"{name}_bn2", f"{name}_relu2"), width, 3, dilation_rate=dilation, name=f"{name}_conv2")
    y = _conv(_bn_relu(y, f"{name}_bn3", f"{name}_relu3"), out, 1, name=f"{name}_conv3")
    if k is not None:
        short = ChannelGroupSum(k, name=f"{name}_squeeze")(x) if k > 1 else x
    elif x.shape[-1] != out:
        short = _conv(_bn_relu(x, f"{name}_shortcut_0", f"{name}_shortcut_1"), out, 1, name=f"{name}_shortcut_2")
    else:
        short = x
    return layers.Add(name=f"{name}_add")([y, short])


def residual_stack(x, out: int, blocks: int, *, dilation: int = 1, first_dilation: int = 1, k: int | None = None,
                   name: str):
    """The official ``_make_residual_block``: a first block in→out (r(x) shortcut when ``k`` is given),
    then ``blocks - 1`` blocks out→out. Only up-sampling stages dilate their first block."""
    x = bottleneck(x, out, dilation=first_dilation, k=k, name=f"{name}_0")
    for b in range(1, blocks):
        x = bottleneck(x, out, dilation=dilation, name=f"{name}_{b}")
    return x


# ---------------------------------------------------------------- network
def fishnet_trunk(inputs, cfg: FishNetConfig, plan: SitePlan, *, stem: Literal["imagenet", "cifar"] = "imagenet") -> Trunk:
    """Stem → tail → bridge → body → head → (classifier head). ``stem="cifar"``: no stem
    downsampling by default, for 32×32 inputs."""
    # long: the paper's four parts (Sun et al. 2018 §3.1, Fig. 2) read in order, as in the authors' code
    planes, res, trans = cfg.planes[1:], cfg.res_blocks, cfg.trans_blocks
    c0 = cfg.planes[0]
    choice, dilation = plan.take("stem")
    x = conv_site(inputs, choice, conv_fn=partial(_stem_unit, filters=c0 // 2), kernel=3, name="conv1", dilation=dilation)
    x = _stem_unit(x, filters=c0 // 2, dilation_rate=plan.dilation, name="conv2")
    x = _stem_unit(x, filters=c0, dilation_rate=plan.dilation, name="conv3")
    choice, _ = plan.take("stem_pool")
    x = pool_site(x, choice, conv_fn=_stem_unit, kernel=3, stride=2, pad=1, name="pool1")

    # level l (0: f0 … 3: f3): its reduction, the dilation its convolutions need (output_stride) and
    # whether the tail pool that made it downsampled (then its mirrored up-sampling and head pool do too)
    level = [x]
    reduction, dil, down = [plan.reduction], [plan.dilation], [True]
    features = [Feature("stem", x, plan.reduction)]
    for i in range(3):  # tail
        x = residual_stack(x, planes[i], res[i], dilation=dil[i], first_dilation=dil[i], name=f"fish{i}_0")
        choice, _ = plan.take(f"tail{i + 1}")
        x = pool_site(x, choice, conv_fn=_pre_act_unit, kernel=2, stride=2, pad=0, name=f"fish{i}_1")
        level.append(x)
        reduction.append(plan.reduction)
        dil.append(plan.dilation)
        down.append(choice.kind != "none")
        features.append(Feature(f"tail{i + 1}", x, plan.reduction))

    # bridge (stage 3): score branch F, attention a, f4 = stage(F)·a + a
    c = planes[3]
    f = _conv(_bn_relu(x, "fish3_0_0", "fish3_0_1"), c // 2, 1, name="fish3_0_2")
    f = _conv(_bn_relu(f, "fish3_0_3", "fish3_0_4"), 2 * c, 1, use_bias=True, name="fish3_1")
    a = _bn_relu(f, "fish3_3_0_0", "fish3_3_0_1")
    a = layers.GlobalAveragePooling2D(keepdims=True, name="fish3_3_0_2")(a)
    a = _conv(a, c // 16, 1, use_bias=True, name="fish3_3_0_3")
    a = layers.Activation("relu", name="fish3_3_0_4")(a)
    a = _conv(a, c, 1, use_bias=True, name="fish3_3_0_5")
    a = layers.Activation("sigmoid", name="fish3_3_0_6")(a)
    s = residual_stack(f, c, res[3], dilation=dil[3], first_dilation=dil[3], name="fish3_2")
    x = layers.Add(name="fish3_add")([layers.Multiply(name="fish3_mul")([s, a]), a])
    bridge = x
    features.append(Feature("bridge", x, reduction[3]))

    body = []
    for j in range(3):  # body (stages 4-6): level 3-j → level 2-j
        i, src = 4 + j, 2 - j
        out = planes[i]
        d = 2**j * dil[3 - j]
        x = residual_stack(x, out, res[i], dilation=d, first_dilation=d, k=x.shape[-1] // out, name=f"fish{i}_0")
        if down[3 - j]:
            x = layers.UpSampling2D(2, interpolation="nearest", name=f"fish{i}_2")(x)
        t = residual_stack(level[src], level[src].shape[-1], trans[j], dilation=dil[src], first_dilation=dil[src],
                           name=f"fish{i}_1")
        x = layers.Concatenate(name=f"fish{i}_concat")([x, t])
        body.append(x)
        features.append(Feature(f"body{j + 1}", x, reduction[src]))

    sources = (body[1], body[0], bridge)  # the official trans_map: stages 7, 8, 9 take fish 5, 4, 3's outputs
    for j in range(3):  # head (stages 7-9): level j → level j+1
        i = 7 + j
        x = residual_stack(x, planes[i], res[i], dilation=dil[j], first_dilation=dil[j], name=f"fish{i}_0")
        choice, _ = plan.take(f"head{j + 1}")
        x = pool_site(x, choice, conv_fn=_pre_act_unit, kernel=2, stride=2, pad=0, name=f"fish{i}_2")
        src = sources[j]
        t = residual_stack(src, src.shape[-1], trans[3 + j], dilation=dil[j + 1], first_dilation=dil[j + 1],
                           name=f"fish{i}_1")
        x = layers.Concatenate(name=f"fish{i}_concat")([x, t])
        features.append(Feature(f"head{j + 1}", x, reduction[j + 1]))

    def head(x, num_classes: int, dropout: float):
        width = x.shape[-1] // 2
        x = _conv(_bn_relu(x, "fish9_3_0", "fish9_3_1"), width, 1, name="fish9_3_2")
        x = _bn_relu(x, "fish9_3_3", "fish9_3_4")
        x = layers.GlobalAveragePooling2D(keepdims=True, name="fish9_4_0")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x) if dropout else x
        x = _conv(x, num_classes, 1, use_bias=True, name="fish9_4_1")
        return layers.Flatten(name="logits")(x)

    return Trunk(features, head)


FAMILY = Family("fishnet", fishnet_sites, fishnet_trunk, PAPER, divisible=True)

VARIANTS = {  # name: (num_res_blks, num_trans_blks, published facts) — official net_factory.py, architectures.md
    "fishnet99": ((2, 2, 6, 2, 1, 1, 1, 1, 2, 2), (1, 1, 1, 1, 1, 4),
                  {"params": 16_628_904, "params_10": 15_582_474, "params_100": 15_677_604, "gflops": 4.31,
                   "imagenet_top1": 77.41, "imagenet_top5": 93.59}),
    "fishnet150": ((2, 4, 8, 4, 2, 2, 2, 2, 2, 4), (2, 2, 2, 2, 2, 4),
                   {"params": 24_959_400, "params_10": 23_912_970, "params_100": 24_008_100, "gflops": 6.45,
                    "imagenet_top1": 78.14, "imagenet_top5": 93.95}),
    "fishnet201": ((3, 4, 12, 4, 2, 2, 2, 2, 3, 10), (2, 2, 2, 2, 2, 9),
                   {"params": 44_584_552, "gflops": 10.58, "imagenet_top1": 78.76, "imagenet_top5": 94.39}),
}

for _name, (_res, _trans, _published) in VARIANTS.items():
    register_model(_name, FAMILY, FishNetConfig(_res, _trans), input_shape=(224, 224, 3), num_classes=1000,
                   published=_published, description=f"FishNet-{_name[7:]} (Sun 2018, official configuration)")

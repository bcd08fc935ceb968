"""airbench: Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU" (arXiv 2404.00498),
the networks of the authors' code (KellerJordan/cifar10-airbench, ``make_net``).

A 2×2 patch-whitening convolution (24 filters, frozen kernel, trained bias; §3.2) and GELU, then
three blocks, each ``conv 3×3 → max-pool 2×2 → BN → GELU`` followed by ``conv → BN → GELU``
(airbench96: two more convolutions and a residual connection around them), a 3×3 max-pool of the
3×3 map, a linear layer without bias and the logits scaled by 1/9 (§3.4). Convolutions have no
bias and start as partial identities (§3.3, :class:`zoo.layers.whitening.PartialDirac`);
BatchNorm has no scale (weight fixed at 1) and epsilon 1e-12.

Downsampling sites: ``block1..3`` — the published network convolves at stride 1 and max-pools
2×2 after it (a *conv site*: ``conv`` strides that convolution instead, with no padding so that 31
px still give 15), and ``head`` — the final 3×3 max-pool (a *pool site* of stride 3).
The whitening kernel is fitted from training images by the recipe
(:func:`zoo.layers.whitening.fit_whitening`); a fresh build has its random initialisation.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from keras import layers

from zoo.layers.downsample import Site, SitePlan, conv_site, pool_site
from zoo.layers.ops import fused_batch_norm
from zoo.layers.whitening import PartialDirac, PatchWhitening
from zoo.models.registry import Family, Feature, Trunk, register_model

PAPER = 'Jordan 2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU" (arXiv 2404.00498)'
WHITEN_SIZE = 2
BN_EPSILON = 1e-12
LOGIT_SCALE = 1 / 9


@dataclass(frozen=True)
class AirbenchConfig:
    """Block widths, convolutions after each block's pool, residual around them, BatchNorm momentum
    (Keras convention: the moving statistics keep ``momentum`` of themselves)."""

    widths: tuple[int, int, int]
    convs_after_pool: int
    residual: bool
    bn_momentum: float


CONFIGS = {  # hyp['net'] of legacy/airbench94.py and legacy/airbench96.py
    "airbench94": AirbenchConfig((64, 256, 256), 1, False, 0.6),  # PyTorch momentum 0.4
    "airbench96": AirbenchConfig((128, 384, 512), 2, True, 0.9),  # PyTorch's default 0.1
}


def airbench_sites(cfg: AirbenchConfig) -> list[Site]:
    blocks = [Site(f"block{i}", "conv", "max", f"block {i}: 3x3 conv then 2x2 max-pool") for i in (1, 2, 3)]
    return blocks + [Site("head", "pool", "max", "3x3 max-pool of the last 3x3 map", stride=3)]


def _bn_gelu(x, cfg: AirbenchConfig, name: str):
    x = fused_batch_norm(axis=-1, epsilon=BN_EPSILON, momentum=cfg.bn_momentum, scale=False, name=f"{name}_bn")(x)
    return layers.Activation("gelu", name=f"{name}_gelu")(x)


def _conv(x, *, filters: int, kernel_size: int = 3, strides: int = 1, padding: str = "same", dilation_rate: int = 1,
          name: str):
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, dilation_rate=dilation_rate,
                         use_bias=False, kernel_initializer=PartialDirac(), name=name)(x)


def _block(x, width: int, cfg: AirbenchConfig, plan: SitePlan, site: str):
    choice, dilation = plan.take(site)
    size = x.shape[1]
    x = conv_site(x, choice, conv_fn=partial(_conv, filters=width), kernel=3, pool_kernel=2, dilation=dilation,
                  target=None if size is None else size // 2, name=f"{site}_conv1")
    x = shortcut = _bn_gelu(x, cfg, f"{site}_conv1")
    for j in range(2, 2 + cfg.convs_after_pool):
        x = _conv(x, filters=width, dilation_rate=plan.dilation, name=f"{site}_conv{j}")
        if cfg.residual and j == 1 + cfg.convs_after_pool:
            x = fused_batch_norm(axis=-1, epsilon=BN_EPSILON, momentum=cfg.bn_momentum, scale=False,
                                 name=f"{site}_conv{j}_bn")(x)
            x = layers.Add(name=f"{site}_add")([x, shortcut])
            x = layers.Activation("gelu", name=f"{site}_out_gelu")(x)
        else:
            x = _bn_gelu(x, cfg, f"{site}_conv{j}")
    return x


def airbench_trunk(inputs, cfg: AirbenchConfig, plan: SitePlan) -> Trunk:
    """Whitening → three blocks → head pool; the head is the unbiased linear layer scaled by 1/9."""
    x = PatchWhitening(2 * 3 * WHITEN_SIZE ** 2, WHITEN_SIZE, padding="valid", name="whiten")(inputs)
    x = layers.Activation("gelu", name="whiten_gelu")(x)
    features = []
    for i, width in enumerate(cfg.widths, 1):
        x = _block(x, width, cfg, plan, f"block{i}")
        features.append(Feature(f"block{i}", x, plan.reduction))
    choice, _ = plan.take("head")

    def head(x, num_classes: int, _dropout: float):
        x = pool_site(x, choice, conv_fn=partial(_conv, filters=x.shape[-1]), kernel=3, stride=3, pad=0, name="head")
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(num_classes, use_bias=False, name="fc")(x)
        return layers.Rescaling(LOGIT_SCALE, name="logit_scale")(x)

    return Trunk(features, head)


FAMILY = Family("airbench", lambda cfg, **_: airbench_sites(cfg), airbench_trunk, PAPER)

PUBLISHED = {  # the paper's Table 1 (mean CIFAR-10 test accuracy over many runs, with TTA) and epochs
    "airbench94": {"cifar10_accuracy": 94.01, "epochs": 9.9},
    "airbench96": {"cifar10_accuracy": 96.05, "epochs": 46},
}

for _name, _cfg in CONFIGS.items():
    register_model(_name, FAMILY, _cfg, input_shape=(32, 32, 3), num_classes=10, published=PUBLISHED[_name],
                   description=f"{_name} (Jordan 2024): whitening, three conv-pool blocks, GELU")

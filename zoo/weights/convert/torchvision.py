"""torchvision state dicts → zoo models (ResNet-18…152, SqueezeNet 1.0 / 1.1, VGG-11…19).

Key layouts (torchvision ``models/resnet.py``, ``squeezenet.py``, ``vgg.py``):

- ResNet: ``conv1``, ``bn1``, ``layer{1-4}.{b}.conv{j}`` / ``bn{j}``, ``layer{L}.0.downsample.{0,1}``
  (1×1 projection + BN), ``fc`` → ``stem_conv``, ``stem_bn``, ``stage{L+1}_block{b+1}_conv{j}_conv`` /
  ``_bn``, ``stage{L+1}_block1[_shortcut]_proj_conv`` / ``_bn``, ``fc``. torchvision strides the
  bottleneck's 3×3, the zoo's default layout.
- SqueezeNet: ``features.0`` (conv1), ``features.{N}.squeeze`` / ``expand1x1`` / ``expand3x3`` for
  the fire modules in order (fire2, fire3, ...), ``classifier.1`` (conv10).
- VGG: ``features.{N}`` convolutions in order → ``block{b}_conv{i}``; ``classifier.0/3/6`` → ``fc1``,
  ``fc2``, ``predictions``. torchvision average-pools adaptively to 7×7 and flattens channels first;
  Keras flattens the (h, w, c) map: ``fc1``'s rows are permuted, and for maps other than 7×7 the
  adaptive pooling (a fixed linear map) is folded into them, so the converted model computes what
  torchvision's does at that input size.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np

from zoo.models import registry
from zoo.weights.convert.common import (TORCH_BN_EPSILON, Assigner, Conversion, ConversionError,
                                        adaptive_pool_matrix, check_bn_epsilon, load_state_dict)

PREPROCESSING = "torch"
FAMILIES = ("resnet", "squeezenet", "vgg")


def target_options(model_name: str, state: dict[str, np.ndarray], options: dict[str, Any]) -> dict[str, Any]:
    """Build options implied by the checkpoint (number of classes), under the user's ``options``."""
    out = dict(options)
    heads = {"resnet": "fc.weight", "squeezenet": "classifier.1.weight", "vgg": "classifier.6.weight"}
    head = heads[_family(model_name)]
    if head in state and out.get("include_top", True):
        out.setdefault("num_classes", int(state[head].shape[0]))
    return out


def _family(model_name: str) -> str:
    family = registry.get_entry(model_name).family.name
    if family not in FAMILIES:
        raise ConversionError(f"torchvision has no {model_name} ({family}); it converts {', '.join(FAMILIES)} models.")
    return family


def _indices(state, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state if (m := rx.match(k))})


def _head_keys(state, prefixes: tuple[str, ...]) -> list[str]:
    return [k for k in state if k.startswith(prefixes)]


def _resnet(a: Assigner, state) -> None:
    a.conv("stem_conv", "conv1")
    a.bn("stem_bn", "bn1")
    for layer in _indices(state, r"layer(\d+)\."):
        stage = layer + 1
        for b in _indices(state, rf"layer{layer}\.(\d+)\."):
            src, dst = f"layer{layer}.{b}", f"stage{stage}_block{b + 1}"
            for j in _indices(state, rf"layer{layer}\.{b}\.conv(\d+)\.weight"):
                a.conv(f"{dst}_conv{j}_conv", f"{src}.conv{j}")
                a.bn(f"{dst}_conv{j}_bn", f"{src}.bn{j}")
            if f"{src}.downsample.0.weight" in state:
                proj = next((p for p in (f"{dst}_shortcut_proj", f"{dst}_proj") if a.has_layer(f"{p}_conv")),
                            f"{dst}_shortcut_proj")
                a.conv(f"{proj}_conv", f"{src}.downsample.0")
                a.bn(f"{proj}_bn", f"{src}.downsample.1")
    if a.has_layer("fc"):
        a.dense("fc", "fc")
    else:
        a.drop(_head_keys(state, ("fc.",)), "the target has no classifier (include_top=False)")


def _squeezenet(a: Assigner, state) -> None:
    a.conv("conv1", "features.0")
    fires = _indices(state, r"features\.(\d+)\.squeeze\.weight")
    for number, index in enumerate(fires, 2):
        for part, target in (("squeeze", "squeeze1x1"), ("expand1x1", "expand1x1"), ("expand3x3", "expand3x3")):
            a.conv(f"fire{number}_{target}", f"features.{index}.{part}")
    if a.has_layer("conv10"):
        a.conv("conv10", "classifier.1")
    else:
        a.drop(_head_keys(state, ("classifier.",)), "the target has no classifier (include_top=False)")


def fold_fc1(weight: np.ndarray, channels: int, height: int, width: int, pooled: int = 7) -> np.ndarray:
    """torchvision's fc1 weight (out, C·7·7 channels-first, after AdaptiveAvgPool2d(7)) → the Keras
    Dense kernel (h·w·C channels-last, out) on the un-pooled h×w map."""
    out = weight.shape[0]
    if weight.shape[1] != channels * pooled * pooled:
        raise ConversionError(f"classifier.0.weight has {weight.shape[1]} inputs, expected "
                              f"{channels}x{pooled}x{pooled}.")
    w = weight.reshape(out, channels, pooled, pooled).astype(np.float64)
    if (height, width) != (pooled, pooled):
        w = np.einsum("ocij,iy,jx->ocyx", w, adaptive_pool_matrix(height, pooled), adaptive_pool_matrix(width, pooled))
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(height * width * channels, out)).astype(weight.dtype)


def _vgg(a: Assigner, state) -> None:
    model = a.model
    bn_keys = [k for k in state if k.startswith("features.") and k.endswith("running_mean")]
    if bn_keys:
        raise ConversionError("this is a batch-norm VGG (vgg*_bn: features hold BatchNorm layers); the zoo's VGG "
                              "follows the paper without batch norm.")
    convs = _indices(state, r"features\.(\d+)\.weight")
    targets = [x.name for x in model.layers if re.fullmatch(r"block\d+_conv\d+", x.name)]
    if len(convs) != len(targets):
        raise ConversionError(f"the checkpoint has {len(convs)} convolutions, {model.name} has {len(targets)}: "
                              f"convert vgg11/13/16/19 into the model of the same depth.")
    for index, target in zip(convs, targets):
        a.conv(target, f"features.{index}")
    if not a.has_layer("fc1"):
        a.drop(_head_keys(state, ("classifier.",)), "the target has no classifier (include_top=False)")
        return
    h, w, c = model.get_layer("flatten").input.shape[1:]
    weight = state.get("classifier.0.weight")
    a.dense("fc1", "classifier.0", kernel=None if weight is None else fold_fc1(np.asarray(weight), c, h, w))
    a.dense("fc2", "classifier.3")
    a.dense("predictions", "classifier.6")


CONVERTERS = {"resnet": _resnet, "squeezenet": _squeezenet, "vgg": _vgg}


# ------------------------------------------------------------ which variant a checkpoint is
def _shape_of(family: str, state) -> Any:
    """What fixes a checkpoint's variant: ResNet (block, blocks per stage), SqueezeNet conv1's (kernel,
    filters), VGG its number of convolutions; ``None`` where the keys do not say."""
    if family == "resnet":
        blocks = tuple(len(_indices(state, rf"layer{i}\.(\d+)\.")) for i in (1, 2, 3, 4))
        block = "bottleneck" if "layer1.0.conv3.weight" in state else "basic"
        return (block, blocks) if all(blocks) else None
    if family == "squeezenet":
        w = state.get("features.0.weight")
        return None if w is None or np.ndim(w) != 4 else (int(w.shape[2]), int(w.shape[0]))
    if any(k.startswith("features.") and k.endswith("running_mean") for k in state):
        return None  # a vgg*_bn: _vgg says so
    return sum(np.ndim(state[f"features.{i}.weight"]) == 4 for i in _indices(state, r"features\.(\d+)\.weight")) or None


def _config_shape(family: str, config) -> Any:
    if family == "resnet":
        return (config.block, tuple(config.layers)) if config.kind == "imagenet" else None
    return tuple(config.conv1) if family == "squeezenet" else sum(config.convs)


def _describe(family: str, shape: Any) -> str:
    if family == "resnet":
        return f"{shape[0]} blocks {'-'.join(map(str, shape[1]))}"
    return f"conv1 {shape[0]}x{shape[0]} with {shape[1]} filters" if family == "squeezenet" else f"{shape} convolutions"


def check_variant(model_name: str, family: str, state) -> None:
    """Refuse a checkpoint of another depth or version in one line that names the variant it looks like
    (instead of listing every missing and unused key)."""
    seen = _shape_of(family, state)
    wanted = _config_shape(family, registry.get_entry(model_name).config)
    if seen is None or seen == wanted:
        return
    like = [n for n in registry.list_models(family=family) if not registry.get_entry(n).defaults
            and _config_shape(family, registry.get_entry(n).config) == seen]
    guess = f"it looks like {like[0]}" if like else "no zoo model has its layout"
    raise ConversionError(f"cannot convert this torchvision checkpoint into {model_name}: {guess} "
                          f"({_describe(family, seen)}; {model_name} has "
                          f"{'another layout' if wanted is None else _describe(family, wanted)}), so its "
                          f"weights would be missing or not used. "
                          + (f"Convert it into {like[0]}." if like else "Check which network the file holds."))


def convert(model_name: str, src: Any, **options: Any) -> Conversion:
    """The zoo model ``model_name`` with the weights of a torchvision checkpoint (path, module or state dict)."""
    family = _family(model_name)
    state = load_state_dict(src)
    check_variant(model_name, family, state)
    options = target_options(model_name, state, options)
    model = registry.build(model_name, **options)
    check_bn_epsilon(model, TORCH_BN_EPSILON, "PyTorch")
    a = Assigner(model, state, what=f"the torchvision {model_name} checkpoint")
    CONVERTERS[family](a, state)
    return Conversion(model, "torchvision", dict(options), **a.finish())

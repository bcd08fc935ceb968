"""The FishNet authors' checkpoints (kevin-ssy/FishNet, PyTorch) → zoo FishNet-99/150/201.

The checkpoints are ``torch.save`` dicts whose ``state_dict`` keys carry DataParallel's ``module.``
prefix, e.g. ``module.fish.fish.0.0.0.bn1.weight`` (stage 0, residual stack, block 0) and the stem's
``module.conv1.0.weight`` / ``module.conv1.1.*``. :mod:`zoo.models.fishnet` names each layer after
its checkpoint path (``fish.fish.`` → ``fish``, dots → underscores: ``fish2_0_1_bn1``, ``conv1_0``,
the classifier ``fish9_4_1``), so the mapping is by name; the layer's type says how to transform:
Conv2d OIHW → HWIO (the final 1×1 classifier convolution → the zoo head, a Conv2D or a Dense), BN
weight/bias/running_mean/running_var → gamma/beta/moving_mean/moving_variance (epsilon 1e-5).

``include_top=False`` ends the network at ``head3`` (2112 channels at 1/32): the score block
``fish.fish.9.3`` (BN-ReLU-1×1 2112→1056-BN-ReLU) is part of the authors' classifier ``_make_score``
and goes with it, so its weights are dropped (``Conversion.dropped`` lists them) with the final
``fish.fish.9.4.1``. For the 1056-channel score features keep the top and read ``fish9_3_4``'s output.

A checkpoint of another depth (FishNet-150 into FishNet-99) is refused in one line naming the
variant its blocks per stage match (:func:`check_variant`).
"""
from __future__ import annotations

import re
from typing import Any

from keras import layers

from zoo.models import registry
from zoo.weights.convert.common import (TORCH_BN_EPSILON, Assigner, Conversion, ConversionError, check_bn_epsilon,
                                        load_state_dict)

PREPROCESSING = "torch"
CLASSIFIER = "fish.fish.9.4.1"


def layer_name(path: str) -> str:
    """A checkpoint module path → the zoo layer name (``fish.fish.2.0.1.bn1`` → ``fish2_0_1_bn1``)."""
    if path.startswith("fish.fish."):
        path = "fish" + path[len("fish.fish."):]
    return path.replace(".", "_")


def blocks_per_stage(state) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(residual blocks of stages 0-9, transfer blocks of stages 4-9) of a checkpoint, as the official
    ``num_res_blks`` / ``num_trans_blks`` (the bridge's residual stack is its sub-module 2)."""
    def count(stage: int, sub: int) -> int:
        rx = re.compile(rf"fish\.fish\.{stage}\.{sub}\.(\d+)\.")
        return len({m.group(1) for k in state if (m := rx.match(k))})

    return (tuple(count(i, 2 if i == 3 else 0) for i in range(10)), tuple(count(i, 1) for i in range(4, 10)))


def check_variant(model_name: str, state) -> None:
    """Refuse a checkpoint of another FishNet depth in one line naming the one it looks like."""
    config = registry.get_entry(model_name).config
    seen = blocks_per_stage(state)
    if not any(seen[0]) or seen == (tuple(config.res_blocks), tuple(config.trans_blocks)):
        return
    like = [n for n in registry.list_models(family="fishnet")
            if (tuple(registry.get_entry(n).config.res_blocks), tuple(registry.get_entry(n).config.trans_blocks)) == seen]
    guess = f"it looks like {like[0]}" if like else "no zoo FishNet has its blocks per stage"
    raise ConversionError(f"cannot convert this FishNet checkpoint into {model_name}: {guess} (residual blocks "
                          f"{'-'.join(map(str, seen[0]))}; {model_name} has {'-'.join(map(str, config.res_blocks))}). "
                          + (f"Convert it into {like[0]}." if like else "Check which network the file holds."))


def convert(model_name: str, src: Any, **options: Any) -> Conversion:
    """The zoo model ``model_name`` (fishnet99/150/201) with the weights of an authors' checkpoint."""
    entry = registry.get_entry(model_name)
    if entry.family.name != "fishnet":
        raise ConversionError(f"the FishNet converter converts fishnet99/150/201, not {model_name}.")
    state = load_state_dict(src)
    check_variant(entry.name, state)
    if f"{CLASSIFIER}.weight" in state and options.get("include_top", True):
        options.setdefault("num_classes", int(state[f"{CLASSIFIER}.weight"].shape[0]))
    model = registry.build(entry.name, **options)
    check_bn_epsilon(model, TORCH_BN_EPSILON, "PyTorch")
    by_name = {x.name: x for x in model.layers}
    a = Assigner(model, state, what=f"the FishNet checkpoint for {entry.name}")
    paths = sorted({k.rsplit(".", 1)[0] for k in state if not k.endswith(".num_batches_tracked")})
    for path in paths:
        target = by_name.get(layer_name(path))
        if target is None:
            if path.startswith("fish.fish.9.") and not ({"fish9_4_1", "fish9_3_2"} & set(by_name)):
                a.drop([k for k in state if k.startswith(f"{path}.")],
                       "the target has no classifier (include_top=False)")
            continue  # left unused: finish() lists it
        if isinstance(target, layers.BatchNormalization):
            a.bn(target.name, path)
        elif isinstance(target, layers.Conv2D):
            a.conv(target.name, path)
        elif isinstance(target, layers.Dense):
            a.conv_as_dense(target.name, path)
        else:
            raise ConversionError(f"{path} maps onto {target.name}, a {type(target).__name__} without weights.")
    return Conversion(model, "fishnet", dict(options), **a.finish())

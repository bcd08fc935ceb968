"""ResNet family: He et al. 2016 (parameter counts and FLOPs from architectures.md)."""
from __future__ import annotations

import keras
import numpy as np
import pytest

import zoo
from zoo.flops import count_flops
from helpers import trainable_params

CIFAR = {  # (option A, option B) trainable params
    "resnet20": (269_722, 272_474), "resnet32": (464_154, 466_906), "resnet44": (658_586, 661_338),
    "resnet56": (853_018, 855_770), "resnet110": (1_727_962, 1_730_714),
}
IMAGENET = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
            "resnet101": 44_549_160, "resnet152": 60_192_808}


@pytest.mark.parametrize("name", sorted(CIFAR))
def test_cifar_params_option_a_and_b(name):
    option_a, option_b = CIFAR[name]
    assert trainable_params(zoo.build(name)) == option_a
    assert trainable_params(zoo.build(name, shortcut="B")) == option_b


def test_resnet1202_params():
    assert trainable_params(zoo.build("resnet1202")) == 19_421_274


@pytest.mark.parametrize("name", sorted(IMAGENET))
def test_imagenet_params(name):
    assert trainable_params(zoo.build(name)) == IMAGENET[name]


@pytest.mark.parametrize("name,low,high", [("resnet18", 1.8, 1.85), ("resnet34", 3.6, 3.7), ("resnet50", 3.8, 4.1),
                                           ("resnet101", 7.6, 7.9), ("resnet152", 11.3, 11.6)])
def test_imagenet_flops_match_published(name, low, high):
    assert low <= count_flops(zoo.build(name)) / 1e9 <= high


def test_cifar_depth_is_6n_plus_2():
    model = zoo.build("resnet56")
    weighted = [l for l in model.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(weighted) == 56


def test_stage_widths_and_resolutions_of_cifar_resnet():
    model = zoo.build("resnet20", features_only=True)
    shapes = [tuple(t.shape[1:]) for t in model.outputs]
    assert shapes == [(32, 32, 16), (32, 32, 16), (16, 16, 32), (8, 8, 64)]


def test_keras_layout_matches_keras_applications_resnet50():
    ours = zoo.build("resnet50", layout="keras")
    theirs = keras.applications.ResNet50(weights=None)
    assert ours.count_params() == theirs.count_params() == 25_636_712
    assert ours.get_layer("stage3_block1_conv1_conv").strides == (2, 2)
    assert ours.get_layer("stage3_block1_conv2_conv").strides == (1, 1)


def test_torchvision_layout_strides_the_3x3():
    model = zoo.build("resnet50")
    assert model.get_layer("stage3_block1_conv2_conv").strides == (2, 2)
    assert model.get_layer("stage3_block1_conv1_conv").strides == (1, 1)
    assert not model.get_layer("stem_conv").use_bias


def test_deep_stem_and_resnet_d():
    c = zoo.build("resnet50", stem="deep")
    assert [c.get_layer(f"stem{i}_conv").filters for i in (1, 2, 3)] == [32, 32, 64]
    d = zoo.build("resnet50", downsample={"shortcut*": "avg"})
    assert trainable_params(d) == IMAGENET["resnet50"]  # ResNet-D moves the stride, adds no weights
    pool = d.get_layer("stage3_block1_shortcut_avgpool")
    assert pool.pool_size == (2, 2) and d.get_layer("stage3_block1_shortcut_proj_conv").strides == (1, 1)


@pytest.mark.parametrize("output_stride,size,dilation", [(32, 2, 1), (16, 4, 2), (8, 8, 4)])
def test_output_stride_dilates_instead_of_downsampling(output_stride, size, dilation):
    model = zoo.build("resnet50", input_shape=(64, 64, 3), include_top=False, output_stride=output_stride)
    assert model.output.shape[1:3] == (size, size)
    assert model.get_layer("stage5_block3_conv2_conv").dilation_rate == (dilation, dilation)
    assert trainable_params(model) == IMAGENET["resnet50"] - (2048 * 1000 + 1000)


def test_features_only_reductions():
    model = zoo.build("resnet50", input_shape=(64, 64, 3), features_only=True)
    info = zoo.feature_info("resnet50", input_shape=(64, 64, 3), features_only=True)
    assert [f["reduction"] for f in info] == [2, 4, 8, 16, 32]
    picked = zoo.build("resnet50", input_shape=(64, 64, 3), features_only=True, out_indices=(0,))
    assert [tuple(t.shape[1:]) for t in picked.outputs] == [(32, 32, 64)]


def test_cifar_stem_for_imagenet_resnet_keeps_resolution():
    model = zoo.build("resnet18", stem="cifar", input_shape=(32, 32, 3), num_classes=10, include_top=False)
    assert model.output.shape[1:3] == (4, 4)


def test_option_a_shortcut_is_parameter_free_and_zero_pads():
    model = zoo.build("resnet20")
    assert not any("shortcut" in l.name and l.weights for l in model.layers)
    sub, pad = model.get_layer("stage2_block1_shortcut_subsample"), model.get_layer("stage2_block1_shortcut_pad")
    x = np.ones((1, 32, 32, 16), "float32")
    out = pad(sub(x)).numpy()
    assert out.shape == (1, 16, 16, 32)
    assert out[..., :8].sum() == 0 and out[..., 24:].sum() == 0 and np.all(out[..., 8:24] == 1)


def test_cifar_rejects_imagenet_stem():
    with pytest.raises(zoo.ZooError, match="fixed 3x3 stem"):
        zoo.build("resnet20", stem="deep")

"""All-CNN family: Springenberg et al. 2015, Tables 1–2 (parameter counts from architectures.md)."""
from __future__ import annotations

import pytest

import zoo
from helpers import structure, trainable_params

REFERENCE_10 = {  # architectures.md, All-Convolutional Net table
    "cnn_a": 839_242, "strided_cnn_a": 839_242, "convpool_cnn_a": 1_254_250, "all_cnn_a": 1_254_250,
    "cnn_b": 885_610, "strided_cnn_b": 885_610, "convpool_cnn_b": 1_300_618, "all_cnn_b": 1_300_618,
    "cnn_c": 954_730, "strided_cnn_c": 954_730, "convpool_cnn_c": 1_369_738, "all_cnn_c": 1_369_738,
}


@pytest.mark.parametrize("name", sorted(REFERENCE_10))
def test_trainable_params_match_paper(name):
    assert trainable_params(zoo.build(name)) == REFERENCE_10[name]


def test_all_cnn_c_with_100_classes():
    assert trainable_params(zoo.build("all_cnn_c", num_classes=100)) == 1_387_108


@pytest.mark.parametrize("letter", "abc")
def test_switching_sites_gives_the_sibling_architectures(letter):
    same = lambda a, b: structure(a) == structure(b)
    assert same(zoo.build(f"all_cnn_{letter}", downsample="max"), zoo.build(f"convpool_cnn_{letter}"))
    assert same(zoo.build(f"convpool_cnn_{letter}", downsample="conv"), zoo.build(f"all_cnn_{letter}"))
    assert same(zoo.build(f"strided_cnn_{letter}", downsample="max"), zoo.build(f"cnn_{letter}"))
    assert not same(zoo.build(f"all_cnn_{letter}"), zoo.build(f"convpool_cnn_{letter}"))


def test_model_c_with_conv_sites_is_all_cnn_c_in_shape_and_size():
    # replacing Model C's pools by learned 3x3/2 convolutions is the All-CNN-C recipe (§3.1)
    a, b = zoo.build("cnn_c", downsample="conv"), zoo.build("all_cnn_c")
    assert trainable_params(a) == trainable_params(b) == REFERENCE_10["all_cnn_c"]
    assert [r[0] for r in structure(a)] == [r[0] for r in structure(b)]


def test_strided_replacement_keeps_its_relu_and_dropout_follows_each_site():
    model = zoo.build("all_cnn_c")
    names = [l.name for l in model.layers]
    for site in ("pool1", "pool2"):
        conv = model.get_layer(f"{site}_conv3_conv")
        assert conv.strides == (2, 2)
        assert names[names.index(conv.name) + 1] == f"{site}_conv3_relu"
        assert model.get_layer(f"{site}_dropout").rate == 0.5
    assert model.get_layer("input_dropout").rate == 0.2


def test_head_matches_table_1():
    model = zoo.build("cnn_c")
    assert model.get_layer("head_conv1_conv").output.shape[1:] == (6, 6, 192)  # unpadded 3x3 on 8x8
    assert model.get_layer("class_conv_conv").kernel_size == (1, 1)
    assert model.output.shape[1:] == (10,)


def test_dropout_option_and_class_relu_option():
    model = zoo.build("all_cnn_c", dropout=0.3, class_relu=False)
    assert model.get_layer("pool1_dropout").rate == 0.3
    assert "class_conv_relu" not in [l.name for l in model.layers]


def test_features_reach_full_resolution_first():
    model = zoo.build("all_cnn_c", features_only=True)
    info = zoo.feature_info("all_cnn_c", features_only=True)
    assert [tuple(t.shape[1:3]) for t in model.outputs] == [(32, 32), (16, 16), (6, 6)]
    assert [f["reduction"] for f in info] == [1, 2, 4]

"""The shared Downsample factory: choices, parsing, plans, and the custom layers behind them."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.errors import ZooError
from zoo.layers import BlurPool2D, ChannelGroupSum, Choice, Site, SitePlan, SpaceToDepth, resolve_choices
from zoo.layers.downsample import CHOICES, out_size, pads_for
from zoo.layers.ops import binomial_filter
from helpers import trainable_params


@pytest.mark.parametrize("name", ["resnet20", "all_cnn_c", "cnn_c", "strided_cnn_b"])
@pytest.mark.parametrize("choice", CHOICES)
def test_every_choice_builds_at_every_site_with_the_same_output(name, choice):
    model = zoo.build(name, downsample=choice)
    assert model.output.shape[1:] == (10,)
    out = model(np.zeros((1, 32, 32, 3), "float32"), training=False)
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("choice", ["max", "avg", "blur", "s2d", "conv"])
def test_imagenet_resnet_site_choices_keep_feature_shapes(choice):
    base = zoo.build("resnet18", input_shape=(64, 64, 3), features_only=True)
    other = zoo.build("resnet18", input_shape=(64, 64, 3), features_only=True, downsample=choice)
    assert [t.shape for t in other.outputs] == [t.shape for t in base.outputs]


def test_choices_change_structure_as_intended():
    layers_of = lambda m: {type(l).__name__ for l in m.layers}
    assert "BlurPool2D" in layers_of(zoo.build("resnet20", downsample="blur"))
    assert "SpaceToDepth" in layers_of(zoo.build("resnet20", downsample={"stage2": "s2d"}))
    assert "AveragePooling2D" in layers_of(zoo.build("cnn_c", downsample="avg"))
    assert "MaxPooling2D" not in layers_of(zoo.build("cnn_c", downsample="conv"))
    # s2d quadruples the input channels of the site's convolution (SPD-Conv)
    s2d = zoo.build("resnet20", downsample={"stage2": "s2d"})
    assert s2d.get_layer("stage2_block1_conv1_conv").kernel.shape == (3, 3, 64, 32)
    # blur and pools add no weights; s2d adds some
    base = trainable_params(zoo.build("resnet20"))
    assert trainable_params(zoo.build("resnet20", downsample="blur")) == base
    assert trainable_params(zoo.build("resnet20", downsample="s2d")) > base


def test_per_site_globs_and_later_keys_win():
    plan = zoo.resolve_plan("resnet50", downsample={"stage*": "max", "stage5": "blur5"})
    assert {k: str(v) for k, v in plan.choices.items() if k.startswith("stage")} == {
        "stage3": "max", "stage4": "max", "stage5": "blur5"}
    assert str(plan.choices["stem"]) == "conv" and str(plan.choices["stem_pool"]) == "max"


def test_one_choice_for_all_leaves_shortcuts_published():
    plan = zoo.resolve_plan("resnet50", downsample="avg")
    assert str(plan.choices["stage3"]) == "avg" and str(plan.choices["shortcut3"]) == "conv"


@pytest.mark.parametrize("spec,expected", [
    ("max", Choice("max")), ("BLUR", Choice("blur")), ("blur5", Choice("blur", 5)),
    ({"type": "blur", "filter_size": 4}, Choice("blur", 4)), (Choice("avg"), Choice("avg")),
])
def test_choice_parsing(spec, expected):
    assert Choice.parse(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("maxpool", "Did you mean 'max'"), (3, "must be a string or a dict"),
    ({"type": "max", "filter_size": 5}, "has no option 'filter_size'"),
    ({"type": "blur", "filter_size": 11}, "must be one of"), ({"filter_size": 3}, "needs a 'type'"),
])
def test_bad_choices_are_named(spec, message):
    with pytest.raises(ZooError, match=message):
        Choice.parse(spec)


def test_unknown_site_suggests_close_names():
    with pytest.raises(ZooError, match=r"unknown downsampling site .*'stage4'.*Did you mean 'stage3'"):
        zoo.build("resnet20", downsample={"stage4": "max"})


def test_shortcut_cannot_stop_downsampling_alone_but_follows_its_stage():
    with pytest.raises(ZooError, match="cannot be 'none' while 'stage2' downsamples"):
        zoo.build("resnet20", downsample={"shortcut2": "none"})
    model = zoo.build("resnet20", downsample={"stage2": "none"}, features_only=True)
    assert [t.shape[1] for t in model.outputs] == [32, 32, 32, 16]


def test_output_stride_must_be_reachable():
    with pytest.raises(ZooError, match="output_stride=3 is not possible.*choose one of"):
        zoo.build("resnet50", output_stride=3)
    with pytest.raises(ZooError, match="choose one of"):
        zoo.build("resnet20", output_stride=8)


def test_plan_bookkeeping_turns_late_sites_into_dilation():
    sites = [Site("a", "conv", "conv"), Site("b", "pool", "max"), Site("c", "conv", "conv")]
    plan = SitePlan.create(sites, output_stride=2)
    assert plan.take("a") == (Choice("conv"), 1)
    assert plan.take("b") == (Choice("none"), 1) and plan.dilation == 2
    assert plan.take("c") == (Choice("none"), 2) and plan.dilation == 4
    assert resolve_choices(sites, None) == {"a": Choice("conv"), "b": Choice("max"), "c": Choice("conv")}


@pytest.mark.parametrize("size,kernel,stride,pad,expected", [
    (224, 7, 2, 3, 112), (112, 3, 2, 1, 56), (109, 3, 2, "ceil", 54), (54, 3, 2, "ceil", 27), (13, 3, 2, "ceil", 6)])
def test_window_sizes_follow_pytorch(size, kernel, stride, pad, expected):
    assert out_size(size, kernel, stride, pad) == expected


def test_padding_is_symmetric_like_pytorch_and_ceil_mode_pads_after():
    assert pads_for(112, 3, 2, 56, prefer=1) == (1, 1)
    assert pads_for(54, 3, 2, 27, prefer="ceil") == (0, 1)
    assert pads_for(109, 3, 2, 54, prefer="ceil") == (0, 0)
    assert pads_for(54, 3, 2, 27) == (1, 1)  # a replacement 3x3/2 conv at a ceil-mode site
    assert pads_for(55, 2, 2, 28) == (0, 1)


def test_blur_filter_is_binomial_and_preserves_constants():
    np.testing.assert_allclose(binomial_filter(3), np.outer([1, 2, 1], [1, 2, 1]) / 16)
    x = np.full((1, 8, 8, 2), 3.0, "float32")
    y = BlurPool2D(3, 2, (1, 1))(x).numpy()
    assert y.shape == (1, 4, 4, 2)
    np.testing.assert_allclose(y, 3.0, rtol=1e-6)


def test_space_to_depth_matches_tensorflow():
    x = np.arange(2 * 4 * 6 * 3, dtype="float32").reshape(2, 4, 6, 3)
    np.testing.assert_array_equal(SpaceToDepth(2)(x).numpy(), tf.nn.space_to_depth(x, 2).numpy())


def test_channel_group_sum_adds_consecutive_channels():
    x = np.arange(8, dtype="float32").reshape(1, 1, 1, 8)
    np.testing.assert_array_equal(ChannelGroupSum(2)(x).numpy().ravel(), [1, 5, 9, 13])

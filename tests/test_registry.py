"""Registry behaviour: names, options, types, input sizes, features and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import zoo
from zoo.cli import main
from zoo.models.registry import parse_options
from zoo.errors import ZooError

FAMILY_NAMES = {
    "allconv": [f"{p}_{l}" for p in ("cnn", "strided_cnn", "convpool_cnn", "all_cnn") for l in "abc"],
    "resnet": ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
               "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"],
}


@pytest.mark.parametrize("family", sorted(FAMILY_NAMES))
def test_every_issue_name_is_registered(family):
    assert sorted(zoo.list_models(family=family)) == sorted(FAMILY_NAMES[family])


def test_list_models_filters_by_glob_and_substring():
    assert zoo.list_models("resnet1*") == ["resnet18", "resnet101", "resnet110", "resnet152", "resnet1202"]
    assert zoo.list_models("cnn_c") == ["all_cnn_c", "cnn_c", "convpool_cnn_c", "strided_cnn_c"]


def test_names_are_case_insensitive():
    assert zoo.build("ResNet20").name == "resnet20"


@pytest.mark.parametrize("call,message", [
    (lambda: zoo.build("resnet5O"), r"unknown model 'resnet5O'\. Did you mean .*'resnet50'"),
    (lambda: zoo.build("resnet20", num_clases=10), r"unknown option for resnet20 'num_clases'.*'num_classes'"),
    (lambda: zoo.build("resnet20", num_classes="10"), r"num_classes='10' .*wrong type \(str\); expected int"),
    (lambda: zoo.build("resnet20", include_top="yes"), "expected bool"),
    (lambda: zoo.build("resnet50", stem="tiny"), r"stem='tiny'.*expected"),
    (lambda: zoo.build("resnet20", pooling="sum"), "pooling='sum'"),
    (lambda: zoo.build("resnet20", num_classes=0), "at least 1"),
    (lambda: zoo.build("resnet20", dropout=1.5), r"dropout must be in \[0, 1\)"),
    (lambda: zoo.build("resnet20", input_shape=(32, 32)), r"\(height, width, channels\)"),
    (lambda: zoo.build(20), "must be a string"),
])
def test_bad_requests_name_the_problem_and_the_fix(call, message):
    with pytest.raises(ZooError, match=message):
        call()


@pytest.mark.parametrize("name,shape,message", [
    ("resnet50", (16, 16, 3), "reduce by 32, so each side must be at least 32"),
    ("all_cnn_c", (8, 8, 3), "at least 12"),
    ("resnet20", (3, 3, 3), "at least 4"),
])
def test_too_small_inputs_are_refused_before_building(name, shape, message):
    with pytest.raises(ZooError, match=message):
        zoo.build(name, input_shape=shape)


def test_removing_downsampling_makes_small_inputs_possible():
    model = zoo.build("resnet50", input_shape=(16, 16, 3), stem="cifar", include_top=False)
    assert model.output.shape[1:3] == (2, 2)


def test_include_top_false_with_pooling():
    assert zoo.build("resnet20", include_top=False).output.shape[1:] == (8, 8, 64)
    assert zoo.build("resnet20", include_top=False, pooling="avg").output.shape[1:] == (64,)
    model = zoo.build("resnet20", classifier_activation="softmax")
    assert model.layers[-1].name == "predictions"
    vgg = zoo.build("vgg11", input_shape=(32, 32, 3), num_classes=10, classifier_activation="softmax")
    assert [x.name for x in vgg.layers[-2:]] == ["predictions", "predictions_activation"]  # the head owns the name


def test_out_indices_out_of_range():
    with pytest.raises(ZooError, match="out_indices .* out of range: resnet20 has 4 stages"):
        zoo.build("resnet20", features_only=True, out_indices=(7,))


def test_parse_options_reads_yaml_values():
    assert parse_options(["num_classes=10", "downsample={stage*: max}", "input_shape=[64, 64, 3]"]) == {
        "num_classes": 10, "downsample": {"stage*": "max"}, "input_shape": (64, 64, 3)}
    with pytest.raises(ZooError, match="key=value"):
        parse_options(["oops"])


def test_cli_list_and_info(capsys):
    assert main(["list", "resnet2*"]) == 0
    out = capsys.readouterr().out
    assert "resnet20" in out and "269,722" in out and "resnet101" not in out
    assert main(["info", "all_cnn_c", "-o", "downsample=max", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == 1_369_738
    assert [(s["site"], s["default"], s["choice"]) for s in info["sites"]] == [
        ("pool1", "conv", "max"), ("pool2", "conv", "max")]


def test_cli_errors_exit_2_with_a_message(capsys):
    assert main(["info", "alexnet"]) == 2
    assert "unknown model 'alexnet'" in capsys.readouterr().err


def test_site_table_gives_the_choices_a_build_takes():
    rows = zoo.site_table("resnet50", output_stride=8)
    assert [(r["site"], r["choice"]) for r in rows][-4:] == [("stage4", "none"), ("shortcut4", "none"),
                                                            ("stage5", "none"), ("shortcut5", "none")]
    assert [r["choice"] for r in zoo.site_table("all_cnn_c", downsample="max")] == ["max", "max"]


def test_feature_info_describes_the_features_only_outputs():
    model = zoo.build("resnet20", features_only=True, out_indices=(1, 3))
    info = zoo.feature_info("resnet20", out_indices=(1, 3))
    assert [(f["name"], f["reduction"], f["channels"]) for f in info] == [("stage1", 1, 16), ("stage3", 4, 64)]
    assert [t.shape[-1] for t in model.outputs] == [16, 64]
    assert not [k for k in vars(model) if k.startswith("zoo") or k == "feature_info"]  # nothing added to the model


@pytest.mark.parametrize("name,options,dataset", [
    ("resnet20", {}, "cifar10"),
    ("resnet18", {"input_shape": (64, 64, 3), "num_classes": 10}, "imagenet"),
])
def test_include_preprocessing_without_weights_normalises_with_the_variant_default(name, options, dataset):
    from zoo.models.registry import DEFAULT_NORMALIZATION

    assert zoo.models.registry.default_normalization(name) == dataset
    model = zoo.build(name, include_preprocessing=True, **options)
    assert [type(x).__name__ for x in model.layers] == ["InputLayer", "Normalization", "Functional"]
    net = model.layers[-1]
    assert net.name == name and len(net.layers) == len(zoo.build(name, **options).layers)
    mean, std = (255 * np.array(v, "float32") for v in DEFAULT_NORMALIZATION[dataset])
    x = np.random.default_rng(0).uniform(0, 255, (2, *model.input.shape[1:])).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), net((x - mean) / std).numpy(), rtol=1e-4, atol=1e-4)


def test_include_preprocessing_needs_rgb_and_a_bool():
    with pytest.raises(ZooError, match="normalises RGB images.*1 channels"):
        zoo.build("resnet20", input_shape=(32, 32, 1), include_preprocessing=True)
    with pytest.raises(ZooError, match="include_preprocessing must be True or False"):
        zoo.build("resnet20", include_preprocessing=1)


@pytest.mark.parametrize("how", [
    "import argparse\nimport zoo.cli.models as cli\np = argparse.ArgumentParser()\ncli.add_arguments(p, 'list')\n"
    "cli.run(p.parse_args(['resnet2*']))",
    "from zoo.cli import main\nassert main(['list', 'resnet2*']) == 0",
], ids=["command", "dispatcher"])
def test_the_zoo_list_command_imports_no_training_stack(how):
    code = (f"import sys\n{how}\n"
            "print(sorted(m for m in ('tensorflow_datasets', 'keras_tuner', 'zoo.training') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert "resnet20" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"

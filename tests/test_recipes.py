"""Recipes: loading, ``extends``, overrides, errors, and every file in recipes/ validating."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from zoo.training import recipe as R
from zoo.training.recipe import RecipeError, load_recipe, resolve

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
RECIPE_FILES = sorted(RECIPES_DIR.glob("*.yaml"))


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_recipe_folder_has_the_required_recipes():
    names = {p.stem for p in RECIPE_FILES}
    for required in ("resnet20-paper", "resnet20-budget", "all_cnn_c-paper", "all_cnn_c-budget",
                     "squeezenet-cifar-budget", "fishnet-cifar-budget", "embedded"):
        assert required in names
    assert any("resnet50" in n for n in names) and any("squeezenet1_1" in n and "imagenet" in n for n in names)


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.stem)
def test_every_recipe_validates(path):
    from zoo.training import validate_recipe

    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.description, "every recipe cites where its choices come from"
    validate_recipe(recipe)  # model name and options (registry), augmentation and normalisation names (data)
    assert load_recipe(resolve(recipe)) == recipe


def test_name_resolves_in_recipes_folder_and_path_works():
    by_name = load_recipe("resnet20-paper")
    assert by_name == load_recipe(RECIPES_DIR / "resnet20-paper.yaml") == load_recipe("resnet20-paper.yaml")
    assert "resnet20-paper" in R.list_recipes()


def test_resnet20_paper_follows_he_et_al():
    r = load_recipe("resnet20-paper")
    assert (r.data.batch_size, r.data.validation, r.optimizer.name) == (128, 5000, "sgd")
    assert (r.optimizer.lr, r.optimizer.momentum, r.optimizer.weight_decay) == (0.1, 0.9, 1e-4)
    assert r.optimizer.decay_mode == "l2"
    assert (r.schedule.name, r.schedule.milestones, r.train.epochs) == ("step", [91, 136], 182)
    assert r.data.augment == ["crop_pad4", "flip"] and r.data.normalization == "per_channel"


def test_extends_inherits_and_overrides():
    paper, budget = load_recipe("resnet20-paper"), load_recipe("resnet20-budget")
    assert budget.name == "resnet20-budget" and budget.description != paper.description
    assert budget.data == paper.data and budget.model == paper.model
    assert budget.optimizer.lr != paper.optimizer.lr and budget.train.epochs < paper.train.epochs
    assert budget.optimizer.momentum == paper.optimizer.momentum  # inherited field of a changed section


def test_extends_cycle_is_an_error(tmp_path):
    _write(tmp_path, "a", {"extends": "b", "model": {"name": "resnet20"}})
    _write(tmp_path, "b", {"extends": "a"})
    with pytest.raises(RecipeError, match="extends itself"):
        load_recipe(tmp_path / "a.yaml")


def test_overrides_are_yaml_typed():
    r = load_recipe("resnet20-paper", ["optimizer.lr=0.05", "train.epochs=3", "model.downsample=max",
                                       "data.augment=[flip]", "optimizer.weight_decay=5e-4",
                                       "train.deterministic=false", "model.downsample2={stage3: avg}"])
    assert r.optimizer.lr == 0.05 and isinstance(r.optimizer.lr, float)
    assert r.train.epochs == 3 and isinstance(r.train.epochs, int)
    assert r.model.options["downsample"] == "max" and r.model.options["downsample2"] == {"stage3": "avg"}
    assert r.data.augment == ["flip"] and r.optimizer.weight_decay == 5e-4 and r.train.deterministic is False


def test_override_into_nested_model_option():
    r = load_recipe({"model": {"name": "resnet20", "downsample": {"stage2": "max"}}}, ["model.downsample.stage3=avg"])
    assert r.model.options["downsample"] == {"stage2": "max", "stage3": "avg"}


def test_int_is_accepted_for_float_and_validation_keeps_count_or_fraction():
    r = load_recipe({"model": {"name": "resnet20"}}, ["optimizer.lr=1", "data.validation=5000"])
    assert r.optimizer.lr == 1.0 and isinstance(r.optimizer.lr, float)
    assert r.data.validation == 5000 and isinstance(r.data.validation, int)
    assert load_recipe({"model": {"name": "resnet20"}}, ["data.validation=0.1"]).data.validation == 0.1


def test_unknown_field_names_field_valid_fields_and_close_match():
    with pytest.raises(RecipeError) as err:
        load_recipe("resnet20-paper", ["optimizer.lrr=0.1"])
    message = str(err.value)
    assert "optimizer.lrr" in message and "Did you mean 'optimizer.lr'?" in message
    assert "momentum" in message and "weight_decay" in message  # lists the section's fields


def test_unknown_section_suggests():
    with pytest.raises(RecipeError, match="Did you mean 'optimizer'"):
        load_recipe("resnet20-paper", ["optimiser.lr=0.1"])


@pytest.mark.parametrize("override, pattern", [
    ("train.epochs=three", r"train.epochs='three' has the wrong type \(str\); expected int"),
    ("train.epochs=2.5", "expected int"),
    ("optimizer.name=rmsprop", "one of sgd, adam, adamw"),
    ("data.augment=flip", "a list of str"),
    ("train.deterministic=3", "expected bool"),
])
def test_wrong_type_is_a_clear_error(override, pattern):
    with pytest.raises(RecipeError, match=pattern):
        load_recipe("resnet20-paper", [override])


@pytest.mark.parametrize("override, pattern", [
    ("schedule.warmup_epochs=500", "warmup_epochs"),
    ("optimizer.lr=0", "optimizer.lr must be positive"),
    ("schedule.milestones=[136, 91]", "increasing"),
    ("data.validation=1.5", "data.validation"),
])
def test_impossible_values_are_errors(override, pattern):
    with pytest.raises(RecipeError, match=pattern):
        load_recipe("resnet20-paper", [override])


def test_adamw_is_decoupled_and_refuses_l2():
    assert load_recipe({"model": {"name": "resnet20"}, "optimizer": {"name": "adamw"}}).optimizer.decay_mode == "decoupled"
    with pytest.raises(RecipeError, match="adamw"):
        load_recipe({"model": {"name": "resnet20"}, "optimizer": {"name": "adamw", "weight_decay_mode": "l2"}})


def test_bad_override_syntax_and_missing_model():
    with pytest.raises(RecipeError, match="section.field=value"):
        load_recipe("resnet20-paper", ["optimizer.lr"])
    with pytest.raises(RecipeError, match="model.name is required"):
        load_recipe({"data": {"batch_size": 4}})


def test_unknown_recipe_name_suggests_close_one():
    with pytest.raises(RecipeError, match="Did you mean 'resnet20-paper'"):
        load_recipe("resnet20-papr")


def test_resolve_is_complete_plain_and_round_trips(tmp_path):
    r = load_recipe("resnet20-budget", ["model.downsample=max"])
    plain = resolve(r)
    assert "extends" not in plain and plain["model"] == {"name": "resnet20", "downsample": "max"}
    assert set(plain["optimizer"]) == {f for f in R.OptimizerSection.__dataclass_fields__}
    path = tmp_path / "saved.yaml"
    path.write_text(R.dump(r))
    assert load_recipe(path) == r


def test_same_experiment_ignores_cosmetic_fields():
    a = load_recipe("resnet20-paper")
    assert R.same_experiment(a, load_recipe("resnet20-paper", ["train.progress=none", "output.runs_dir=x"])) == []
    diffs = R.same_experiment(a, load_recipe("resnet20-paper", ["optimizer.lr=0.2"]))
    assert diffs == ["optimizer.lr: 0.1 -> 0.2"]


def test_validate_recipe_catches_bad_model_option_and_augmentation():
    from zoo.training import validate_recipe

    with pytest.raises(ValueError, match="downsampel"):
        validate_recipe(load_recipe("resnet20-paper", ["model.downsampel=max"]))
    with pytest.raises(RecipeError, match="Did you mean 'flip'"):
        validate_recipe(load_recipe("resnet20-paper", ["data.augment=[flp]"]))


def test_run_name_and_schedule_length():
    r = load_recipe("resnet20-budget")
    assert r.run_name == "resnet20-budget-resnet20" and r.schedule_epochs == r.train.epochs
    assert load_recipe(r, ["output.name=mine", "schedule.epochs=50"]).run_name == "mine"


def test_installed_recipes_are_found_under_the_prefix(tmp_path, monkeypatch):
    """A wheel installs recipes/*.yaml into <prefix>/share/zoo/recipes (pyproject data-files);
    recipe names resolve there from any working directory."""
    import sys

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((RECIPES_DIR.parent / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["data-files"]["share/zoo/recipes"]
    assert sorted(p for pattern in shipped for p in RECIPES_DIR.parent.glob(pattern)) == RECIPE_FILES
    share = tmp_path / "prefix" / "share" / "zoo" / "recipes"
    share.mkdir(parents=True)
    _write(share, "installed-only", {"model": {"name": "resnet20"}})
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    monkeypatch.chdir(tmp_path)
    assert "installed-only" in R.list_recipes()
    assert load_recipe("installed-only").model.name == "resnet20"


def test_overrides_may_follow_options_on_the_command_line():
    """`zoo train R --overwrite train.epochs=3` (argparse alone rejects overrides after an option);
    anything that is not key=value is still an error."""
    from zoo.cli import command_parser, parse_args_with_overrides

    parser, _ = command_parser("train")
    args = parse_args_with_overrides(parser, ["r.yaml", "a.b=1", "--overwrite", "train.epochs=3"])
    assert args.overwrite and args.overrides == ["a.b=1", "train.epochs=3"]
    with pytest.raises(SystemExit):
        parse_args_with_overrides(parser, ["r.yaml", "--overwrite", "--bogus"])
    with pytest.raises(SystemExit):
        parse_args_with_overrides(command_parser("info")[0], ["resnet20", "a=1"])  # a command without overrides

"""Every private framework member the zoo uses (zoo/compat.py) still exists and does what the zoo expects."""
from __future__ import annotations

import io
import contextlib

from zoo import compat


def test_keras_tuner_failed_trial_tracebacks_can_be_turned_off(tmp_path):
    import keras_tuner as kt
    from keras_tuner.src import config

    class Failing(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            raise kt.errors.FailedTrialError("over budget")

    def search(name: str) -> str:
        hp = kt.HyperParameters()
        hp.Choice("x", [1, 2])
        oracle = kt.oracles.RandomSearchOracle(objective=kt.Objective("score", "max"), max_trials=1, hyperparameters=hp,
                                               max_consecutive_failed_trials=5)
        tuner = Failing(oracle, directory=str(tmp_path), project_name=name)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            tuner.search(verbose=0)
        assert tuner.oracle.trials["0"].status == "FAILED"
        return err.getvalue()

    assert config.DEBUG is True  # keras-tuner's default: a traceback per failed trial
    assert "FailedTrialError" in search("loud")
    with compat.keras_tuner_tracebacks(False):
        assert config.DEBUG is False
        assert "FailedTrialError" not in search("quiet")
    assert config.DEBUG is True  # restored


def test_nested_layers_reaches_layers_inside_nested_models_and_custom_layers():
    import keras

    from zoo.compat import nested_layers

    class Wrapper(keras.layers.Layer):  # a custom layer holding a sublayer, not a Model
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.bn = keras.layers.BatchNormalization(name="inner_bn")

        def call(self, x):
            return self.bn(x)

    inner_in = keras.Input((4,))
    inner = keras.Model(inner_in, keras.layers.Dense(4, name="inner_dense")(inner_in), name="inner")
    x = keras.Input((4,))
    model = keras.Model(x, Wrapper(name="wrap")(inner(x)))
    names = {layer.name for layer in nested_layers(model)}
    assert {"inner", "inner_dense", "wrap", "inner_bn"} <= names and model.name not in names

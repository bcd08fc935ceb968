"""Two probes of the weight averages, on the 5,000 held-out images (see RUN.md, "Probes").

1. Which images to recompute BatchNorm statistics on: the final average of runs/resnet20-swa with
   its statistics recomputed on the training images under each augmentation.
2. Uniform soups (Wortsman et al. 2022): the mean of the published weights and the two averages,
   all warm-started from the same weights, with statistics recomputed on the training pipeline.

    python results/runs/resnet20-swa/probes.py > results/runs/resnet20-swa/probes.txt
"""
import hashlib
import itertools

import numpy as np

import zoo.data as zdata
from zoo import training as T
from zoo.training.inputs import pipeline
from zoo.training.results import metrics_on
from zoo.training.swa import recompute_batchnorm
from zoo.training.recipe import load_recipe

FILES = {"published": "zoo/weights/files/resnet20-cifar10-f2ea3a07.weights.h5",
         "swa": "runs/resnet20-swa/model.weights.h5", "swa-cycles": "runs/resnet20-swa-cycles/model.weights.h5"}
recipe = load_recipe("results/runs/resnet20-swa/recipe.yaml")
data = T.load_data(recipe)
model, _ = T.build_model(recipe, data.info, zdata.normalization_layer(recipe.data.normalization, data.raw_train))
weights = {}
for name, path in FILES.items():
    print(f"{name}: {path} sha256 {hashlib.sha256(open(path, 'rb').read()).hexdigest()[:16]}")
    model.load_weights(path)
    weights[name] = [w.numpy() for w in model.trainable_weights]


def held_out(label: str) -> None:
    m = metrics_on(model, recipe, data.validation, data.info.num_classes)
    print(f"{label}: accuracy {100 * m['accuracy']:.2f}%, loss {m['loss']:.4f}", flush=True)


model.load_weights(FILES["swa"])
for augment in (["crop_pad4", "flip", "cutout"], ["crop_pad4", "flip"], []):
    recipe.data.augment = augment
    images = pipeline(recipe, data.raw_train, data.info.num_classes, training=bool(augment))
    recompute_batchnorm(model, images, data.steps_per_epoch)
    held_out(f"swa, BatchNorm statistics from training images with augment={augment or 'none'}")

for size in (2, 3):
    for names in itertools.combinations(FILES, size):
        for variable, *ws in zip(model.trainable_weights, *(weights[n] for n in names)):
            variable.assign(np.mean(ws, axis=0))
        recompute_batchnorm(model, data.train, data.steps_per_epoch)
        held_out(f"uniform soup of {' + '.join(names)}")

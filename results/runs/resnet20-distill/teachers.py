"""The teachers of recipes/resnet20-distill.yaml on the 5,000 held-out images (see RUN.md):
each published model alone, the mean of their logits, and the distillation target itself (the mean
of their probabilities softened at temperature 4, zoo.training.distill.soft_targets).

    python results/runs/resnet20-distill/teachers.py > results/runs/resnet20-distill/teachers.txt

Recipe overrides as arguments name other teachers (results/runs/resnet20-distill-2/teachers.txt); a
first argument without "=" names another recipe, e.g. resnet20-distill-mirror, whose
``train.distill_flip`` target averages each image and its mirror
(results/runs/resnet20-distill-mirror/teachers.txt).
"""
import sys

import numpy as np

from zoo.training import distill
from zoo import training as T
from zoo.training.recipe import load_recipe

args = sys.argv[1:]
name = args.pop(0) if args and "=" not in args[0] else "resnet20-distill"
recipe = load_recipe(name, ["data.source=../shared/data/cifar10-jpeg-train.tar.gz", "data.eval_split=null", *args])
data = T.load_data(recipe)
images, labels = (np.concatenate(a) for a in zip(*((x.numpy(), y.numpy()) for x, y in data.validation)))
labels = labels.argmax(1) if labels.ndim == 2 else labels
print(f"{len(labels)} held-out images of {data.info.name} (data.seed {recipe.data.seed})")
teachers = {spec: distill.load_teacher(spec)
            for spec in recipe.train.teachers}
logits = {spec: t.predict(images, batch_size=500, verbose=0) for spec, t in teachers.items()}
flip = recipe.train.distill_flip
mirrored = {spec: t.predict(images[:, :, ::-1], batch_size=500, verbose=0) for spec, t in teachers.items()} if flip else {}
for spec, z in logits.items():
    both = f", with its mirror {100 * np.mean((z + mirrored[spec]).argmax(1) == labels):.2f}%" if flip else ""
    print(f"{spec}: {100 * np.mean(z.argmax(1) == labels):.2f}%{both}")
mean_logits = np.mean(list(logits.values()), axis=0)
print(f"mean of the logits: {100 * np.mean(mean_logits.argmax(1) == labels):.2f}%")
target = np.concatenate([np.asarray(distill.soft_targets(list(teachers.values()), images[i:i + 500],
                                                         recipe.train.distill_temperature, flip))
                         for i in range(0, len(images), 500)])
views = " over each image and its mirror" if flip else ""
print(f"distillation target (mean softmax at T={recipe.train.distill_temperature}{views}): "
      f"{100 * np.mean(target.argmax(1) == labels):.2f}%, mean max probability {target.max(1).mean():.3f}")

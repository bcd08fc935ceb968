"""Scores zoo.build("resnet20", weights=TAG, include_preprocessing=True) for the packaged tags on the 5,000 held-out images:
    python results/runs/resnet20-distill-clean/verify.py > results/runs/resnet20-distill-clean/verify.txt
"""
import numpy as np, zoo
from zoo import training as T
from zoo.training.recipe import load_recipe
recipe = load_recipe("resnet20-distill", ["data.source=../shared/data/cifar10-jpeg-train.tar.gz", "data.eval_split=null"])
data = T.load_data(recipe)
images, labels = (np.concatenate(a) for a in zip(*((x.numpy(), y.numpy()) for x, y in data.validation)))
labels = labels.argmax(1) if labels.ndim == 2 else labels
for tag in ("cifar10", "cifar10-v1"):
    m = zoo.build("resnet20", weights=tag, include_preprocessing=True)  # raw RGB in, as the pipeline gives
    print(f'zoo.build("resnet20", weights="{tag}"): {100*np.mean(m.predict(images, batch_size=500, verbose=0).argmax(1)==labels):.2f}% on {len(labels)} held-out images')

"""The All-CNN paper comparison: Springenberg et al. 2015, Table 2 (model C column), under equal training.

:func:`paper_variants` gives the four model-C variants (All-CNN-C, ConvPool-CNN-C, Strided-CNN-C,
Model C) as overrides of one recipe, for :func:`zoo.search.compare`; :func:`paper_section` writes
one comparison's section of ``results/studies/README.md``: each variant at its best learning rate
(the paper's protocol, §3.1), the pooling-against-striding pairs, and whether the variants rank
as the paper's published test errors do.
"""
from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from zoo.errors import ZooError
from zoo.models.registry import get_entry
from zoo.studies.render import fmt, md_table, ratio
from zoo.training import Recipe

__all__ = ["PAPER_VARIANTS", "paper_section", "paper_variants"]

SEED_SUFFIX = " (seed "  # paper-comparison repeats: "All-CNN-C (seed 1)"
LR_SUFFIX = " (lr "  # paper-comparison learning rates other than the recipe's: "All-CNN-C (lr 0.002)"
PAPER_VARIANTS = {  # Springenberg et al. 2015, Table 2 (model C column)
    "All-CNN-C": "all_cnn_c", "ConvPool-CNN-C": "convpool_cnn_c", "Strided-CNN-C": "strided_cnn_c",
    "Model C": "cnn_c",
}
PAIRS = (("ConvPool-CNN-C", "All-CNN-C", "the extra 3x3 convolution"),  # (pooled, strided, where the pool sits)
         ("Model C", "Strided-CNN-C", "the stage's last convolution"))


def paper_variants(recipe: Recipe, seeds: int = 1, lrs: Sequence[float] = ()) -> dict[str, list[str]]:
    """The All-CNN paper's four model-C variants as overrides of ``recipe`` (its own
    ``model.downsample``, if any, is dropped so every variant is the published network), each
    trained with ``seeds`` consecutive seeds from the recipe's and at each learning rate of ``lrs``
    (default: the recipe's own; the paper picks each model's rate from a grid, §3.1). Round by
    round, so that an interrupted comparison has every variant once first: the recipe's rate before
    the others, every rate before the next seed. Labels: ``"<variant> (lr R) (seed N)"``, where the
    recipe's own rate and seed add nothing, so a comparison run without ``lrs`` extends with them."""
    if seeds < 1:
        raise ZooError(f"--paper-seeds {seeds}: the comparison needs at least one seed per variant (1 or more).")
    rates = paper_rates(recipe.optimizer.lr, lrs)
    extra = ["model.downsample=null"] if "downsample" in recipe.model.options else []
    out = {}
    for k in range(seeds):
        seed = recipe.train.seed + k
        for lr in rates:
            own = lr == recipe.optimizer.lr
            for label, name in PAPER_VARIANTS.items():
                key = label + ("" if own else f"{LR_SUFFIX}{lr:g})") + ("" if k == 0 else f"{SEED_SUFFIX}{seed})")
                out[key] = [f"model.name={name}", *extra, *([] if own else [f"optimizer.lr={lr:g}"]),
                            *([f"train.seed={seed}"] if k else [])]
    return out


def paper_rates(own: float, lrs: Sequence[float]) -> list[float]:
    """The learning-rate grid of a paper comparison, the recipe's own rate first when it is in it."""
    rates = [float(lr) for lr in lrs] or [own]
    bad = [lr for lr in rates if not lr > 0]
    if bad or len(set(rates)) != len(rates):
        raise ZooError(f"--paper-lrs {','.join(f'{lr:g}' for lr in rates)}: learning rates must be positive and "
                       "different from each other (e.g. --paper-lrs 0.001,0.002).")
    return sorted(rates, key=lambda lr: lr != own)


def variant_of(trial: Mapping[str, Any]) -> str:
    """The paper variant a comparison trial trained ("All-CNN-C (lr 0.002) (seed 1)" -> "All-CNN-C")."""
    return str(trial.get("variant")).split(LR_SUFFIX)[0].split(SEED_SUFFIX)[0]


def by_variant(study: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Completed paper-comparison trials grouped by variant, each at its best learning rate (the
    paper's protocol, Springenberg et al. 2015 §3.1: a rate per model from a grid, here the one of
    highest mean validation accuracy): that mean, each run's accuracy at that rate (seed repeats),
    the rate, the mean at every rate tried, and the variant's FLOPs and latency (median)."""
    groups: dict[str, dict[float, list[Mapping[str, Any]]]] = {}
    for t in study.get("trials", []):
        if t.get("status") == "completed":
            groups.setdefault(variant_of(t), {}).setdefault((t.get("config") or {}).get("lr"), []).append(t)
    out = {}
    for variant, by_lr in groups.items():
        means = {lr: statistics.fmean(t["val_accuracy"] for t in trials) for lr, trials in by_lr.items()}
        best = max(means, key=means.get)
        trials = by_lr[best]
        latency = [t["latency_ms"] for t in trials if t.get("latency_ms") is not None]
        out[variant] = {"val_accuracy": means[best], "runs": [t["val_accuracy"] for t in trials], "lr": best,
                        "by_lr": means, "flops": trials[0].get("flops"),
                        "latency_ms": statistics.median(latency) if latency else None}
    return out


def rates_tried(done: Mapping[str, Mapping[str, Any]]) -> list[float]:
    """The learning rates a paper comparison trained with (from :func:`by_variant`), ascending."""
    return sorted({lr for v in done.values() for lr in v["by_lr"] if lr is not None})


def _lr_section(done: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The table of mean validation accuracy per variant and learning rate, when several were tried."""
    rates = rates_tried(done)
    if len(rates) < 2:
        return []
    rows = [[k, *(fmt(v["by_lr"].get(lr), "%") if lr in v["by_lr"] else "—" for lr in rates), f"{v['lr']:g}"]
            for k, v in done.items()]
    return [("**Learning rate per variant.** As in the paper (Springenberg et al. 2015 §3.1: each model at the "
             "rate from a grid that suits it), every variant is compared at its best rate below; the choice "
             "uses the same validation images, for every variant alike."), ""] + md_table(
        ["variant", *(f"val acc % at lr {lr:g}" for lr in rates), "chosen lr"], rows) + [""]


def _paper_order(done: Mapping[str, Mapping[str, Any]], errors: Mapping[str, float]) -> list[str]:
    """Whether the variants rank as in the paper: its order by published test error against
    this study's order by (mean) validation accuracy, and the pairs that agree."""
    names = [v for v in sorted(errors, key=errors.get) if v in done]
    if len(names) < 2:
        return []
    ours = sorted(names, key=lambda v: -done[v]["val_accuracy"])
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    agree = [f"{a} > {b}" for a, b in pairs if done[a]["val_accuracy"] > done[b]["val_accuracy"]]
    return [(f"**Paper order** (published test error, best first): {' < '.join(names)}; here (validation "
             f"accuracy, best first): {' > '.join(ours)}. {len(agree)} of {len(pairs)} pairs rank as in the paper"
             f"{': ' + ', '.join(agree) if agree else ''}."), ""]


def _published_error(model: str | None) -> float | None:
    """The registry's published CIFAR-10 test error of ``model`` (None for an unknown model or none)."""
    try:
        return get_entry(model).published.get("cifar10_error") if model else None
    except ZooError:
        return None


def _verdict(done: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The pooling-against-striding pairs (:data:`PAIRS`) of the variants that finished."""
    pairs = []
    for pooled, strided, where in PAIRS:
        a, b = done.get(pooled), done.get(strided)
        if a and b:
            seeds = (f" (means over {len(a['runs'])} and {len(b['runs'])} seeds)"
                     if max(len(a["runs"]), len(b["runs"])) > 1 else "")
            pairs.append(f"pooling after {where} ({pooled}) instead of striding it ({strided}): "
                         f"{100 * (a['val_accuracy'] - b['val_accuracy']):+.2f} pts validation accuracy{seeds} at "
                         f"{ratio(a.get('flops'), b.get('flops'))} the FLOPs and "
                         f"{ratio(a.get('latency_ms'), b.get('latency_ms'))} the latency")
    return ["**Pooling vs striding.** " + "; ".join(pairs) + ".", ""] if pairs else []


def paper_section(study: Mapping[str, Any], folder: str) -> list[str]:
    """The README section of one paper comparison kept in ``folder`` (its directory name, which
    tells apart several runs of the same comparison, e.g. at different schedules)."""
    rows, published_errors = [], {}
    for t in study.get("trials", []):
        model = (t.get("config") or {}).get("model")
        published = _published_error(model)
        if published is not None:
            published_errors[variant_of(t)] = published
        rows.append([t.get("variant") or t.get("label"), model, t.get("status"), fmt(t.get("val_accuracy"), "%"),
                     fmt(t.get("params"), "int"), fmt(t.get("flops"), "M"), fmt(t.get("latency_ms"), "ms"),
                     fmt(t.get("train_time_s")), "—" if published is None else f"{published:.2f}"])
    recipe, done = study.get("recipe") or {}, by_variant(study)
    many = any(len(v["runs"]) > 1 for v in done.values())
    summary = md_table(["variant", "seeds", "mean val acc %", "range %"],
                       [[k, len(v["runs"]), fmt(v["val_accuracy"], "%"),
                         f"{100 * min(v['runs']):.2f}–{100 * max(v['runs']):.2f}"] for k, v in done.items()]) + [""]
    train, rates = recipe.get("train") or {}, rates_tried(done)
    varied = ("each seed listed" if many else f"seed {train.get('seed')}") + (
        f", learning rates {', '.join(f'{lr:g}' for lr in rates)}" if len(rates) > 1 else "")
    return [f"### [{folder}]({folder}/report.md) — Springenberg et al. 2015, Table 2, under equal training", "",
            *_verdict(done), *_paper_order(done, published_errors), *_lr_section(done), *(summary if many else []),
            (f"Recipe {recipe.get('name')} for every variant (same data, {train.get('epochs')} epochs, {varied}); "
             "the last column is the paper's CIFAR-10 test error after 350 epochs on all 50k images without "
             "augmentation, for reference only."), ""] + md_table(
        ["variant", "model", "status", "val acc %", "params", "MFLOPs", "latency ms", "train s",
         "published test error %"], rows) + [""]

"""Multi-worker (and multi-GPU) training of a recipe with ``tf.distribute``.

``model.fit`` under ``MultiWorkerMirroredStrategy`` fails with Keras 3 ("Attempt to convert a
value (PerReplica…)", keras-team/keras#20585), so this module trains with a custom step instead:
the dataset goes through ``strategy.experimental_distribute_dataset`` (each global batch of
``data.batch_size`` images is split across all replicas of all workers), ``strategy.run`` runs
forward and backward on each replica, the loss is the per-example loss summed and divided by
the *global* batch (``tf.nn.compute_average_loss``; weight-decay penalties divided by the number
of replicas), and ``optimizer.apply`` all-reduces the gradients before every replica applies the
same update, so the weights stay identical on every worker. Model and optimizer are built under
``strategy.scope()`` with the same functions ``zoo train`` uses.

The strategy comes from ``--workers host:port,... --index i`` (written to ``TF_CONFIG``) or an
existing ``TF_CONFIG``: ``MultiWorkerMirroredStrategy``; without either, ``MirroredStrategy`` on
a machine with several GPUs, else the default strategy (one device).

The chief (worker 0) writes the same run directory and report as ``zoo train``: recipe.yaml,
history.csv, tensorboard/, checkpoints/{best,last}.weights.h5, model.weights.h5, model.keras,
report.json/.md (with a ``distributed`` section) and curves.png. Every other worker writes its
final weights and history to ``<run dir>/workers/worker-<i>/`` (so they can be compared). A run
is not resumed: an unfinished run directory of the same recipe is trained again from epoch 1;
a finished one is refused, as ``zoo train`` does, unless ``--overwrite``.

    python -m zoo.training.distributed RECIPE [overrides...] --workers 127.0.0.1:20001,127.0.0.1:20002 --index 0
    TF_CONFIG='{"cluster": {"worker": ["h1:20001", "h2:20001"]}, "task": {"type": "worker", "index": 1}}' \\
        python -m zoo.training.distributed RECIPE
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "add_distributed_arguments",
    "cluster_spec",
    "is_chief",
    "main",
    "make_strategy",
    "run_from_args",
    "strategy_name",
    "tf_config",
    "train_distributed",
]

WORKERS_DIR = "workers"


# -------------------------------------------------------------------------------- strategy
def tf_config(workers: str | Sequence[str], index: int) -> dict[str, Any]:
    """The ``TF_CONFIG`` of worker ``index`` of ``workers`` (``"h1:p1,h2:p2"`` or a list)."""
    hosts = [w.strip() for w in (workers.split(",") if isinstance(workers, str) else workers) if w and w.strip()]
    if not hosts:
        raise ValueError("--workers needs at least one host:port.")
    bad = [h for h in hosts if h.rpartition(":")[2].isdigit() is False or not h.rpartition(":")[0]]
    if bad:
        raise ValueError(f"workers must be host:port, got {bad}.")
    if len(set(hosts)) != len(hosts):
        raise ValueError(f"workers repeat an address: {hosts}.")
    if not isinstance(index, int) or not 0 <= index < len(hosts):
        raise ValueError(f"--index must be in 0..{len(hosts) - 1} for {len(hosts)} workers, got {index!r}.")
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}


def cluster_spec() -> dict[str, Any] | None:
    """The parsed ``TF_CONFIG`` (``None`` when unset or without a cluster)."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from None
    return config if config.get("cluster") else None


def make_strategy(workers: str | Sequence[str] | None = None, index: int | None = None, *,
                  timeout_s: float | None = None):
    """The strategy for this process; create it before any other TensorFlow op runs.

    ``workers``/``index`` (or ``TF_CONFIG``): ``MultiWorkerMirroredStrategy`` whose collectives
    time out after ``timeout_s`` (``None``: never); several GPUs: ``MirroredStrategy``; else the
    default strategy."""
    import tensorflow as tf

    if workers is not None:
        os.environ["TF_CONFIG"] = json.dumps(tf_config(workers, 0 if index is None else index))
    elif index is not None:
        raise ValueError("--index needs --workers (or TF_CONFIG without --index).")
    if cluster_spec() is not None:
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO,
            timeout_seconds=timeout_s)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _task(strategy) -> tuple[str | None, int, int]:
    """``(task type, task index, number of workers)``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, 0, 1
    spec = resolver.cluster_spec().as_dict()
    count = sum(len(v) for k, v in spec.items() if k in ("chief", "worker"))
    return resolver.task_type, int(resolver.task_id or 0), count


def strategy_name(strategy) -> str:
    """``MultiWorkerMirroredStrategy``, ``MirroredStrategy`` or the class name of ``strategy``."""
    import tensorflow as tf

    for cls, name in ((tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
                      (tf.distribute.MirroredStrategy, "MirroredStrategy")):
        if isinstance(strategy, cls):
            return name
    return "default (one device)" if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy() \
        else type(strategy).__name__


def is_chief(strategy) -> bool:
    """The chief writes the run directory: task ``chief``, or worker 0 in a cluster without one."""
    task_type, task_id, _ = _task(strategy)
    if task_type is None or task_type == "chief":
        return True
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in spec


# --------------------------------------------------------------------------------- training
def _check_run_dir(recipe, path: Path, overwrite: bool) -> None:
    """What ``prepare_run_dir`` refuses, checked without writing (non-chief workers)."""
    from zoo import report as zreport
    from zoo.training.recipe import RecipeError, load_recipe, same_experiment
    from zoo.training.run import RunDirError, RunFinishedError

    saved = path / "recipe.yaml"
    if overwrite or not saved.exists():
        return
    try:
        diffs = same_experiment(load_recipe(saved), recipe)
    except RecipeError as err:
        diffs = [f"the saved recipe no longer loads ({err})"]
    if diffs:
        raise RunDirError(f"{path} holds a run of a different recipe ({'; '.join(diffs[:6])}); use another "
                          "--run-dir or --overwrite.")
    if (path / "report.json").exists():
        status = zreport.read_json(path / "report.json").get("status", "?")
        raise RunFinishedError(f"{path} already holds a finished run (status {status}). Pass --overwrite to "
                               "train it again.")


def _per_example_loss(recipe, one_hot: bool):
    import keras

    logits = recipe.model.options.get("classifier_activation") in (None, "linear")
    if one_hot:
        return keras.losses.CategoricalCrossentropy(from_logits=logits, label_smoothing=recipe.train.label_smoothing,
                                                    reduction=None)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=logits, reduction=None)


def _distribute(strategy, ds):
    import tensorflow as tf

    options = tf.data.Options()
    # in-memory data has no files to shard by: every worker reads all of it and keeps its share
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(ds.with_options(options))


class _Steps:
    """The replicated training, evaluation and barrier functions."""

    def __init__(self, strategy, model, optimizer, loss_fn, global_batch: int, one_hot: bool):
        import keras
        import tensorflow as tf

        self.strategy = strategy
        replicas = strategy.num_replicas_in_sync
        scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def correct(y, logits):
            labels = tf.argmax(y, axis=-1, output_type=tf.int32) if one_hot else tf.cast(tf.reshape(y, [-1]), tf.int32)
            hits = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels)
            return tf.reduce_sum(tf.cast(hits, tf.float32))

        def penalty():
            losses = model.losses
            return tf.add_n([tf.cast(v, tf.float32) for v in losses]) if losses else tf.constant(0.0)

        def train_replica(x, y):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                per_example = loss_fn(y, tf.cast(logits, tf.float32))
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                loss += penalty() / replicas  # tf.nn.scale_regularization_loss
                target = optimizer.scale_loss(loss) if scaled else loss
            grads = tape.gradient(target, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss, correct(y, logits), tf.cast(tf.shape(logits)[0], tf.float32)

        def eval_replica(x, y):
            logits = tf.cast(model(x, training=False), tf.float32)
            per_example = loss_fn(y, logits)
            return (tf.reduce_sum(per_example), correct(y, logits), tf.cast(tf.shape(logits)[0], tf.float32),
                    penalty() / replicas)

        def reduce(values):
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in values]

        @tf.function
        def train_step(iterator):
            return reduce(strategy.run(train_replica, args=next(iterator)))

        @tf.function
        def eval_step(batch):
            return reduce(strategy.run(eval_replica, args=batch))

        # BatchNorm moving statistics are updated from each replica's own batch (Keras 3 creates them
        # with aggregation "none"), so they drift apart; averaging them after every epoch gives every
        # worker the same weights (tf.keras averaged them on read; PyTorch DDP without SyncBN has the
        # same per-replica statistics).
        stats = [v for v in model.non_trainable_variables if "float" in str(v.dtype)]

        def sync_replica():
            ctx = tf.distribute.get_replica_context()
            for v in stats:
                v.assign(ctx.all_reduce(tf.distribute.ReduceOp.MEAN, tf.identity(v.value)))

        @tf.function
        def sync_statistics():
            strategy.run(sync_replica)

        def barrier_replica():
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.constant(1.0))

        @tf.function
        def barrier():
            return strategy.experimental_local_results(strategy.run(barrier_replica))[0]

        self.train_step, self.eval_step, self.barrier = train_step, eval_step, barrier
        self.sync_statistics = sync_statistics

    def evaluate(self, dist_ds) -> dict[str, float]:
        loss = hits = count = 0.0
        reg = None
        for batch in dist_ds:
            s, c, n, r = (float(v) for v in self.eval_step(batch))
            loss, hits, count, reg = loss + s, hits + c, count + n, r
        if count == 0:
            return {}
        return {"val_loss": loss / count + (reg or 0.0), "val_accuracy": hits / count}


def train_distributed(recipe: Any, overrides: Sequence[str] = (), run_dir: str | Path | None = None,
                      overwrite: bool = False, *, workers: str | Sequence[str] | None = None,
                      index: int | None = None, timeout_s: float | None = None, strategy: Any = None):
    """Train ``recipe`` (as :func:`zoo.training.run.train` takes it) with ``strategy`` (default
    :func:`make_strategy` of ``workers``/``index`` or ``TF_CONFIG``) and a custom distributed
    training step. ``data.batch_size`` is the global batch, split over all replicas (it must be
    a multiple of their number). Returns a :class:`zoo.training.run.RunResult`: the run directory and
    report on the chief, ``<run dir>/workers/worker-<i>`` and a short report elsewhere."""
    started = time.perf_counter()
    if strategy is None:
        strategy = make_strategy(workers, index, timeout_s=timeout_s)  # before any other TensorFlow op
    import keras
    import tensorflow as tf

    import zoo.data as zdata
    from zoo.bench import core as zbench
    from zoo import report as zreport
    from zoo import runtime
    from zoo.training import run as ztrain
    from zoo.training.recipe import load_recipe, resolve

    recipe = load_recipe(recipe, overrides)
    ztrain.validate_recipe(recipe)
    chief = is_chief(strategy)
    task_type, task_id, num_workers = _task(strategy)
    replicas = strategy.num_replicas_in_sync
    global_batch = recipe.data.batch_size
    if global_batch % replicas:
        raise ValueError(f"data.batch_size={global_batch} (the global batch) must be a multiple of the "
                         f"{replicas} replicas.")
    base = ztrain._run_dir(recipe, run_dir)
    if chief:
        run = ztrain.prepare_run_dir(recipe, run_dir, overwrite)
    else:
        _check_run_dir(recipe, base, overwrite)
        run = base / WORKERS_DIR / f"worker-{task_id}"
        run.mkdir(parents=True, exist_ok=True)
    runtime.seed_everything(recipe.train.seed, recipe.train.deterministic)
    settings = zbench.apply_training_settings(recipe, verbose=chief)
    data = ztrain.load_data(recipe)
    one_hot = recipe.train.label_smoothing > 0
    with strategy.scope():
        normalization = zdata.normalization_layer(recipe.data.normalization, data.raw_train)
        model, net = ztrain.build_model(recipe, data.info, normalization)
        optimizer = ztrain.make_optimizer(recipe, model, data.steps_per_epoch)
        if keras.config.dtype_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    steps = _Steps(strategy, model, optimizer, _per_example_loss(recipe, one_hot), global_batch, one_hot)
    dist_train = _distribute(strategy, data.train)
    dist_val = _distribute(strategy, data.validation) if data.validation is not None else None
    if chief:
        print(f"zoo.distributed: {recipe.name} ({recipe.model.name}) -> {run}\n"
              f"  {strategy_name(strategy)}: {num_workers} worker(s), {replicas} replica(s), global batch "
              f"{global_batch} ({global_batch // replicas} per replica), {data.steps_per_epoch} steps/epoch",
              flush=True)
    writer = None
    if chief and recipe.output.tensorboard:
        writer = tf.summary.create_file_writer(str(run / "tensorboard" / "train"))
    history: list[dict[str, Any]] = []
    status, tripped, best = "completed", None, -math.inf
    persistent = iter(dist_train) if recipe.train.steps_per_epoch else None
    ckpt = run / "checkpoints"
    for epoch in range(1, recipe.train.epochs + 1):
        lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        t0 = time.perf_counter()
        iterator = persistent or iter(dist_train)
        loss_sum = hits = count = 0.0
        for _ in range(data.steps_per_epoch):
            loss, c, n = (float(v) for v in steps.train_step(iterator))
            loss_sum, hits, count = loss_sum + loss, hits + c, count + n
        steps.sync_statistics()
        train_time = time.perf_counter() - t0
        row = {"epoch": epoch, "loss": loss_sum / data.steps_per_epoch, "accuracy": hits / max(count, 1.0)}
        if dist_val is not None:
            row.update(steps.evaluate(dist_val))
        epoch_time = time.perf_counter() - t0
        row.update(lr=lr, epoch_time_s=epoch_time, train_time_s=train_time,
                   train_images_per_s=count / max(train_time, 1e-9))
        finite = all(math.isfinite(row[k]) for k in ("loss", "val_loss") if k in row)
        if not finite:  # every worker sees the same reduced loss, so all stop here
            tripped = {"epoch": epoch, "batch": "end", "loss": row["loss"], "what": "loss"}
            status = "nan"
            break
        history.append(row)
        if chief:
            zreport.write_history(history, run / "history.csv")
            ckpt.mkdir(parents=True, exist_ok=True)
            model.save_weights(ckpt / "last.weights.h5")
            monitor = row.get("val_accuracy", row["accuracy"])
            if monitor > best:
                best = monitor
                model.save_weights(ckpt / "best.weights.h5")
            if writer is not None:
                with writer.as_default(step=epoch):
                    for key, value in row.items():
                        if key != "epoch":
                            tf.summary.scalar(key, value)
                writer.flush()
        print(f"zoo.distributed: worker {task_id} epoch {epoch}/{recipe.train.epochs} "
              + " ".join(f"{k} {v:.4g}" for k, v in row.items() if k != "epoch"), flush=True)
    dist_info = {"strategy": strategy_name(strategy), "num_workers": num_workers, "task_type": task_type,
                 "task_index": task_id, "num_replicas": replicas, "global_batch_size": global_batch,
                 "per_replica_batch_size": global_batch // replicas,
                 "tf_config": cluster_spec()}
    if not chief:
        model.save_weights(run / "model.weights.h5")
        zreport.write_history(history, run / "history.csv")
        report = {"run_dir": str(run), "status": status, "worker": dist_info, "history": history}
        zreport.write_json(report, run / "worker.json")
        steps.barrier()  # wait until the chief has written its report
        return ztrain.RunResult(run, status, report)
    message = ""
    if status == "nan":
        message = ztrain._restore_last_good(run, model, tripped, history)
    evaluation = {}
    if status == "completed" or history:
        model, evaluation = ztrain._save_and_evaluate(run, recipe, data, model)
    final, best_row = ztrain._summaries(history)
    epochs_run = len(history)
    report = {
        "run_name": run.name, "run_dir": str(run), "status": status, "message": message,
        "epochs": recipe.train.epochs, "recipe": resolve(recipe),
        "model": ztrain._model_facts(recipe, model, net), "data": ztrain._data_facts(data.info),
        "final": final, "best": best_row, "evaluation": evaluation, "nan": tripped, "history": history,
        "timing": ztrain._timing(history, started, epochs_run),
        "settings": {**ztrain._settings(recipe, data), "precision": settings.precision, "device": settings.device,
                     "training_loop": "zoo.training.distributed custom step"},
        "distributed": dist_info, "environment": runtime.environment(),
    }
    zreport.write_run_report(report, run)
    print(f"zoo.distributed: {status}; final val accuracy {final.get('val_accuracy')}, report {run / 'report.md'}",
          flush=True)
    steps.barrier()
    if status == "nan" and recipe.train.nan_policy == "raise":
        raise ztrain.TrainingDiverged(message)
    return ztrain.RunResult(run, status, zreport.read_json(run / "report.json"))


# ---------------------------------------------------------------------------------------- CLI
def add_distributed_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``zoo train``'s arguments plus ``--workers``, ``--index`` and ``--timeout``."""
    from zoo.training.run import add_train_arguments

    add_train_arguments(parser)
    parser.add_argument("--workers", help="host:port of every worker, comma-separated, the same on each "
                        "(default: TF_CONFIG, else MirroredStrategy on several GPUs)")
    parser.add_argument("--index", type=int, help="this worker's position in --workers (0 is the chief)")
    parser.add_argument("--timeout", type=float, help="seconds before a collective gives up (default: never)")
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Exit status as ``zoo train``'s: 0 done (or already finished), 1 bad input, 3 NaN."""
    from zoo.errors import ZooError
    from zoo.training.recipe import RecipeError
    from zoo.training.run import RunDirError, RunFinishedError, TrainingDiverged

    try:
        result = train_distributed(args.recipe, args.overrides, run_dir=args.run_dir, overwrite=args.overwrite,
                                   workers=args.workers, index=args.index, timeout_s=args.timeout)
    except RunFinishedError as err:
        print(f"zoo.distributed: {err}", file=sys.stderr)
        return 0
    except (RunDirError, RecipeError, ZooError, ValueError) as err:
        print(f"zoo.distributed: error: {err}", file=sys.stderr)
        return 1
    except TrainingDiverged:
        return 3
    return 0 if result.status == "completed" else 3


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zoo.training.distributed RECIPE [overrides...] [--workers H:P,... --index I]``."""
    parser = add_distributed_arguments(argparse.ArgumentParser(
        prog="python -m zoo.training.distributed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter))
    from zoo.training.recipe import parse_args_with_overrides

    return run_from_args(parse_args_with_overrides(parser, argv))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())

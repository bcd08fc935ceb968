"""Multi-worker (and multi-GPU) training on the one fit path (``tf.distribute``).

:func:`zoo.training.fit.train` takes the strategy as an argument; this module makes it and, where
``model.fit`` cannot run it, supplies the epoch loop. ``model.fit`` under
``MultiWorkerMirroredStrategy`` fails with Keras 3 ("Attempt to convert a value (PerReplica…)",
keras-team/keras#20585), so :func:`run_epochs` trains with a replicated step instead and drives
the *same* Keras callbacks ``fit`` would (history, checkpoints, run state, NaN guard,
TensorBoard): the dataset goes through ``strategy.experimental_distribute_dataset`` (each global
batch of ``data.batch_size`` images is split across all replicas of all workers), ``strategy.run``
runs forward and backward on each replica, the loss is the per-example loss summed and divided by
the *global* batch (``tf.nn.compute_average_loss``; weight-decay penalties divided by the number
of replicas), and ``optimizer.apply`` all-reduces the gradients before every replica applies the
same update, so the weights stay identical on every worker.

The strategy comes from ``--workers host:port,... --index i`` (written to ``TF_CONFIG``) or an
existing ``TF_CONFIG``: ``MultiWorkerMirroredStrategy``; without either, ``MirroredStrategy`` on
a machine with several GPUs, else the default strategy (one device). The chief (worker 0) writes
the run directory; every other worker writes its history and final weights to
``<run dir>/workers/worker-<i>/``. A killed run resumes, on every worker, from the chief's run
state (so all workers restart at the same epoch).

    zoo train-distributed RECIPE [overrides...] --workers 127.0.0.1:20001,127.0.0.1:20002 --index 0
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from zoo.errors import ZooError
from zoo.training.model import from_logits


def tf_config(workers: str | Sequence[str], index: int) -> dict[str, Any]:
    """The ``TF_CONFIG`` of worker ``index`` of ``workers`` (``"h1:p1,h2:p2"`` or a list)."""
    hosts = [w.strip() for w in (workers.split(",") if isinstance(workers, str) else workers) if w and w.strip()]
    if not hosts:
        raise ZooError("--workers needs at least one host:port.")
    bad = [h for h in hosts if h.rpartition(":")[2].isdigit() is False or not h.rpartition(":")[0]]
    if bad:
        raise ZooError(f"workers must be host:port, got {bad}.")
    if len(set(hosts)) != len(hosts):
        raise ZooError(f"workers repeat an address: {hosts}.")
    if not isinstance(index, int) or not 0 <= index < len(hosts):
        raise ZooError(f"--index must be in 0..{len(hosts) - 1} for {len(hosts)} workers, got {index!r}.")
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}


def cluster_spec() -> dict[str, Any] | None:
    """The parsed ``TF_CONFIG`` (``None`` when unset or without a cluster)."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise ZooError(f"TF_CONFIG is not valid JSON: {err}") from None
    return config if config.get("cluster") else None


def make_strategy(workers: str | Sequence[str] | None = None, index: int | None = None, *,
                  timeout_s: float | None = None):
    """The strategy for this process; create it before any other TensorFlow op runs.

    ``workers``/``index`` (or ``TF_CONFIG``): ``MultiWorkerMirroredStrategy`` whose collectives
    time out after ``timeout_s`` (``None``: never); several GPUs: ``MirroredStrategy``; else the
    default strategy."""
    if workers is not None:
        os.environ["TF_CONFIG"] = json.dumps(tf_config(workers, 0 if index is None else index))
    elif index is not None:
        raise ZooError("--index needs --workers (or TF_CONFIG without --index).")
    if cluster_spec() is not None:
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO,
            timeout_seconds=timeout_s)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def task_of(strategy) -> tuple[str | None, int, int]:
    """``(task type, task index, number of workers)``."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, 0, 1
    spec = resolver.cluster_spec().as_dict()
    count = sum(len(v) for k, v in spec.items() if k in ("chief", "worker"))
    return resolver.task_type, int(resolver.task_id or 0), count


def strategy_name(strategy) -> str:
    """``MultiWorkerMirroredStrategy``, ``MirroredStrategy`` or the class name of ``strategy``."""
    for cls, name in ((tf.distribute.MultiWorkerMirroredStrategy, "MultiWorkerMirroredStrategy"),
                      (tf.distribute.MirroredStrategy, "MirroredStrategy")):
        if isinstance(strategy, cls):
            return name
    return "default (one device)" if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy() \
        else type(strategy).__name__


def is_chief(strategy) -> bool:
    """The chief writes the run directory: task ``chief``, or worker 0 in a cluster without one."""
    task_type, task_id, _ = task_of(strategy)
    if task_type is None or task_type == "chief":
        return True
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in spec


def needs_step_loop(strategy: Any) -> bool:
    """Whether ``model.fit`` cannot run under ``strategy`` (multi-worker: keras-team/keras#20585)."""
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def distributed_facts(strategy: Any, global_batch: int) -> dict[str, Any]:
    """The report's ``distributed`` section."""
    task_type, task_id, num_workers = task_of(strategy)
    replicas = strategy.num_replicas_in_sync
    return {"strategy": strategy_name(strategy), "num_workers": num_workers, "task_type": task_type,
            "task_index": task_id, "num_replicas": replicas, "global_batch_size": global_batch,
            "per_replica_batch_size": global_batch // replicas, "tf_config": cluster_spec()}


def check_global_batch(strategy: Any, global_batch: int) -> None:
    """``data.batch_size`` is the global batch: it must split evenly over the replicas."""
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ZooError(f"data.batch_size={global_batch} (the global batch) must be a multiple of the "
                       f"{replicas} replicas.")


def per_example_loss(recipe: Any, one_hot: bool) -> keras.losses.Loss:
    """The recipe's cross-entropy without reduction (the replicated step averages it globally)."""
    logits = from_logits(recipe)
    if one_hot:
        return keras.losses.CategoricalCrossentropy(from_logits=logits, label_smoothing=recipe.train.label_smoothing,
                                                    reduction=None)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=logits, reduction=None)


def distribute(strategy: Any, ds: tf.data.Dataset) -> Any:
    """``ds`` split across the replicas (in-memory data: every worker reads all and keeps its share)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(ds.with_options(options))


class ReplicatedSteps:
    """The replicated training, evaluation and barrier functions."""

    def __init__(self, strategy, model, optimizer, loss_fn, global_batch: int, one_hot: bool, jit_compile: bool = False):
        # long: the replica functions close over one strategy, model and optimizer and are traced together
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

        @tf.function(jit_compile=jit_compile)  # train.jit_compile: XLA for the forward and backward pass
        def gradients(x, y):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                per_example = loss_fn(y, tf.cast(logits, tf.float32))
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                loss += penalty() / replicas  # tf.nn.scale_regularization_loss
                target = optimizer.scale_loss(loss) if scaled else loss
            return loss, tape.gradient(target, model.trainable_variables), correct(y, logits), \
                tf.cast(tf.shape(logits)[0], tf.float32)

        def train_replica(x, y):
            loss, grads, hits, count = gradients(x, y)
            optimizer.apply(grads, model.trainable_variables)  # all-reduces across replicas: outside XLA
            return loss, hits, count

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


class StepLoop:
    """The epoch loop of a multi-worker run: the replicated step, driving the *same* Keras callbacks
    at the points ``model.fit`` calls them (a NaN raises from the guard, as in ``fit``)."""

    def __init__(self, strategy: Any, model: keras.Model, recipe: Any, data: Any):
        one_hot = recipe.train.label_smoothing > 0
        self.steps = ReplicatedSteps(strategy, model, model.optimizer, per_example_loss(recipe, one_hot),
                                     recipe.data.batch_size, one_hot, jit_compile=bool(recipe.train.jit_compile))
        self.model, self.recipe, self.data = model, recipe, data
        self.train = distribute(strategy, data.train)
        self.validation = distribute(strategy, data.validation) if data.validation is not None else None

    def barrier(self) -> None:
        """Wait until every worker gets here (the chief calls it once its report is written)."""
        self.steps.barrier()

    def _train_epoch(self, hooks: Any, iterator: Any) -> dict[str, float]:
        loss_sum = hits = count = 0.0
        for step in range(self.data.steps_per_epoch):
            loss, c, n = (float(v) for v in self.steps.train_step(iterator))
            loss_sum, hits, count = loss_sum + loss, hits + c, count + n
            hooks.on_train_batch_end(step, {"loss": loss_sum / (step + 1)})
        self.steps.sync_statistics()
        return {"loss": loss_sum / self.data.steps_per_epoch, "accuracy": hits / max(count, 1.0)}

    def run(self, callbacks: Sequence[keras.callbacks.Callback], initial_epoch: int = 0) -> None:
        """Epochs ``initial_epoch + 1 .. train.epochs``."""
        hooks = keras.callbacks.CallbackList(list(callbacks), model=self.model, add_history=False, add_progbar=False)
        stream = iter(self.train)  # endless, keyed by epoch from the first one to run (zoo.training.inputs)
        hooks.on_train_begin()
        for epoch in range(initial_epoch, self.recipe.train.epochs):
            hooks.on_epoch_begin(epoch)
            logs = self._train_epoch(hooks, stream)
            if self.validation is not None:
                hooks.on_test_begin()
                logs.update(self.steps.evaluate(self.validation))
                hooks.on_test_end()
            hooks.on_epoch_end(epoch, logs)
        hooks.on_train_end()

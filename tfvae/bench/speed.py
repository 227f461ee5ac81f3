"""Training and evaluation speed: the `train`, `evaluate`, `profile` and `strategies` sections.

- train: seconds per epoch and images/s of `fit` on the training images, for each variant of the levers
  (XLA, steps_per_execution); training only, no validation pass; the median of the epochs after the first
  (which traces and compiles);
- evaluate: `tfvae.evaluate` with K importance samples on test images, as `tfvae evaluate` runs it;
- profile: where a training epoch goes: the kernel products alone, the networks forward and backward,
  + Adam, the full train step, each run for one epoch's steps inside one graph call;
- strategies: seconds per `tfvae train` epoch of the default model under each strategy (one device, 2 logical
  CPU devices, 2 worker processes on 127.0.0.1), with and without --jit-compile.

Train and evaluate results carry their workload (`tfvae.bench.kernels.workloads`), whose floor the report adds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

from tfvae.bench.kernels import product_kernel, workloads
from tfvae.bench.options import EVAL_IMAGES, IMPORTANCE_SAMPLES, at_least
from tfvae.config import Config
from tfvae.errors import ConfigError

__all__ = ["VARIANTS", "TrainOptions", "EvaluateOptions", "ProfileOptions", "StrategiesOptions", "section_train",
           "section_evaluate", "section_profile", "section_strategies"]

VARIANTS = {  # the levers, spelled out (the default config is "spe16")
    "plain": {"jit_compile": False, "steps_per_execution": 1},
    "jit": {"jit_compile": True, "steps_per_execution": 1},
    "spe16": {"jit_compile": False, "steps_per_execution": 16},
    "jit+spe16": {"jit_compile": True, "steps_per_execution": 16},
    "spe64": {"jit_compile": False, "steps_per_execution": 64},
    "epoch": {"jit_compile": False, "steps_per_execution": None},  # a whole epoch per graph call
    # bfloat16 matrix products and activations (AVX512_BF16 on CPUs), distributions and loss in float32.
    "bf16": {"jit_compile": False, "steps_per_execution": 16, "mixed_precision": True},
}
EPOCHS = 4  # train, strategies: epochs per measurement, the first one not timed


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """train: `fit` of the model under each lever, each variant in its own process."""

    config: Config  # the model trained, its objective, batch size and dataset
    data_dir: Optional[str] = None  # local data laid out like shared/data (None: the config's, then TFDS)
    variants: tuple = tuple(VARIANTS)  # the levers measured, keys of VARIANTS
    epochs: int = EPOCHS  # epochs per variant, the first one not timed
    limit: Optional[int] = None  # the first N training images only (None: the config's limit, else all)

    def __post_init__(self):
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"unknown variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}")
        at_least(self, 1, "epochs", "limit")


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """evaluate: importance-sampled log p(x) on the first test images."""

    config: Config  # the model measured (an untrained one costs the same FLOPs)
    run_dir: Optional[str] = None  # a trained run: its config and weights instead (None: `config`, untrained)
    data_dir: Optional[str] = None  # local data laid out like shared/data (None: the config's, then TFDS)
    eval_images: int = EVAL_IMAGES  # the first N test images
    importance_samples: int = IMPORTANCE_SAMPLES  # K

    def __post_init__(self):
        at_least(self, 1, "eval_images", "importance_samples")


@dataclasses.dataclass(frozen=True)
class ProfileOptions:
    """profile: one training epoch taken apart, level by level."""

    config: Config  # the model trained
    data_dir: Optional[str] = None  # local data; given, the input pipeline is timed too
    limit: Optional[int] = None  # the first N training images only (None: the config's limit, else all)

    def __post_init__(self):
        at_least(self, 1, "limit")


@dataclasses.dataclass(frozen=True)
class StrategiesOptions:
    """strategies: `tfvae train` of the default model under each distribution strategy."""

    epochs: int = EPOCHS  # epochs per run, the first one not timed
    data_dir: Optional[str] = None  # local data laid out like shared/data (None: TFDS)

    def __post_init__(self):
        at_least(self, 1, "epochs")


def _training_images(config: Config, data_dir: Optional[str], limit: Optional[int]):
    """(images, values) of the config's training split, the first `limit` (or config.limit) only; `values` are
    make_training_dataset's keywords for what the images hold (dynamic, grey)."""
    from tfvae.datasets import config_splits

    splits = config_splits(config, data_dir)
    limit = limit or config.limit
    return splits.train[:limit] if limit else splits.train, {"dynamic": splits.dynamic, "grey": splits.grey}


def section_train(options: TrainOptions, variant: str) -> dict:
    import tensorflow as tf
    import tf_keras as tfk

    from tfvae.distribute import configure_devices
    from tfvae.pipeline import make_training_dataset, steps_per_epoch
    from tfvae.train import compile_vae

    images, values = _training_images(options.config, options.data_dir, options.limit)
    steps = steps_per_epoch(len(images), options.config.batch_size)
    lever = VARIANTS[variant]
    config = options.config.replace(**{**lever, "steps_per_execution": lever["steps_per_execution"] or steps})
    configure_devices(config)  # the precision policy, before the model is built
    vae = compile_vae(config, tf.distribute.get_strategy())
    seconds = []

    class EpochTimer(tfk.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    data = make_training_dataset(images, config.batch_size, seed=0, epochs=options.epochs, **values)
    history = vae.fit(
        data, epochs=options.epochs, steps_per_epoch=steps,
        callbacks=[EpochTimer()], verbose=0,
    ).history
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    load = workloads(config, vae, train_examples=len(images), eval_examples=1, importance_samples=1)["train"]
    return {
        "variant": variant,
        "examples": len(images),
        "parameters": vae.count_params(),
        "epoch_seconds": seconds,
        "seconds_per_epoch": steady,
        "images_per_second": len(images) / steady,
        "train_elbo": history["elbo"],
        "workload": load,
    }


def section_evaluate(options: EvaluateOptions) -> dict:
    from tfvae.datasets.splits import split_images
    from tfvae.evaluate import evaluate_vae

    config = options.config
    if options.run_dir:
        from tfvae.runs import load_vae

        config, vae = load_vae(options.run_dir)
    else:  # an untrained model costs the same FLOPs
        from tfvae.models import build_vae

        vae = build_vae(config)
    images = split_images(config, "test", options.data_dir)
    if options.eval_images > len(images):
        raise ConfigError(f"--eval-images {options.eval_images} is larger than the {len(images)} test images")
    images = images[: options.eval_images]
    result = evaluate_vae(vae, images, importance_samples=options.importance_samples)
    load = workloads(config, vae, train_examples=config.batch_size, eval_examples=len(images),
                     importance_samples=options.importance_samples)["evaluate"]
    return {
        "examples": len(images),
        "importance_samples": options.importance_samples,
        "seconds": result.seconds,
        "images_per_second": len(images) / result.seconds,
        "log_likelihood": result.log_likelihood,
        "elbo": result.elbo,
        "workload": load,
    }


def section_profile(options: ProfileOptions) -> dict:
    """Where a training epoch's time goes: each level of the step run for one epoch's steps inside one graph call."""
    import numpy as np
    import tensorflow as tf

    from tfvae import flops
    from tfvae.datasets import grey_levels
    from tfvae.pipeline import make_training_dataset, steps_per_epoch
    from tfvae.train import compile_vae

    config = options.config
    images, values = _training_images(config, options.data_dir, options.limit)
    steps = steps_per_epoch(len(images), config.batch_size)
    vae = compile_vae(config, tf.distribute.get_strategy())
    variables = vae.trainable_variables
    vae.optimizer.apply_gradients([(tf.zeros_like(v), v) for v in variables])  # create Adam's slots outside the graphs
    x = tf.constant(grey_levels(images[: config.batch_size]) if values["grey"] or values["dynamic"]
                    else images[: config.batch_size].astype(np.float32))  # (B, H, W, C)
    products = [flops.Product.from_dict(e) for e in workloads(
        config, vae, train_examples=config.batch_size, eval_examples=1, importance_samples=1)["train"]["products"].values()]
    kernels = [product_kernel(p, 1) for p in products]

    def epoch_of(body):
        @tf.function
        def run():
            return tf.while_loop(lambda i, acc: i < steps, lambda i, acc: (i + 1, acc + body()), (0, 0.0))[1]

        return run

    def networks(update):
        with tf.GradientTape() as tape:
            params = vae.encoder(x)
            loss = tf.reduce_sum(vae.decoder(params[:, : vae.latent_dim])) + tf.reduce_sum(params)
        grads = tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        if update:
            vae.optimizer.apply_gradients(zip(grads, variables))
        return loss + tf.add_n([tf.reduce_sum(g) for g in grads])

    levels = {
        "kernel_products_only": lambda: tf.add_n([tf.reduce_sum(kernel(0)) for kernel in kernels]),
        "networks_forward_backward": lambda: networks(False),
        "plus_adam": lambda: networks(True),
        "full_train_step": lambda: vae.train_step((x, x))["elbo"],
    }
    result = {}
    for name, body in levels.items():
        run_epoch = epoch_of(body)
        run_epoch()  # trace
        result[name] = min(_timed(run_epoch) for _ in range(3))
    if options.data_dir:  # the input pipeline alone: one epoch of batches, produced and discarded
        start = time.perf_counter()
        for _ in make_training_dataset(images, config.batch_size, seed=0, epochs=1, **values):
            pass
        result["input_pipeline_only"] = time.perf_counter() - start
    return {"steps": steps, "seconds_per_epoch": result}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn().numpy()
    return time.perf_counter() - start


def section_strategies(options: StrategiesOptions) -> dict:
    """Seconds per `tfvae train` epoch of the default model (mean of epochs 2 to --epochs) under each strategy,
    with and without XLA."""
    from tfvae.bench.runner import child_env  # here: the runner imports this module
    from tfvae.runs import TIMING_FILE, read_history

    def train(run_dir, flags, env=None):
        command = [sys.executable, "-m", "tfvae.cli.main", "train", "--epochs", str(options.epochs), "--verbose", "0",
                   "--run-dir", run_dir, *flags]
        if options.data_dir:
            command += ["--data-dir", options.data_dir]
        return subprocess.Popen(command, env={**child_env(), **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for jit in ("--no-jit-compile", "--jit-compile"):
            for name in ("default", "mirrored", "multi_worker"):
                run_dir = os.path.join(scratch, name + jit)
                if name == "multi_worker":
                    sockets = [socket.socket() for _ in range(2)]
                    for s in sockets:
                        s.bind(("127.0.0.1", 0))
                    cluster = {"worker": [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]}
                    for s in sockets:
                        s.close()
                    processes = [
                        train(run_dir, ["--strategy", "multi_worker", jit],
                              {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
                        for i in range(2)
                    ]
                else:
                    flags = ["--strategy", "mirrored", "--cpu-devices", "2"] if name == "mirrored" else []
                    processes = [train(run_dir, flags + [jit])]
                errors = [p.communicate()[1] for p in processes]
                rows = read_history(run_dir, TIMING_FILE) if all(p.returncode == 0 for p in processes) else []
                key = f"{name} {jit}"
                if rows:
                    results[key] = statistics.mean(r["seconds"] for r in rows[1:]) if len(rows) > 1 else rows[0]["seconds"]
                else:
                    results[key] = (errors[0].strip().splitlines() or ["failed"])[-1]
    return results

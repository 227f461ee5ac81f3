"""How close tfvae runs to this machine's limit: training, evaluation and sampling against FLOP floors.

    tfvae bench [--run-dir RUN | --preset NAME, model flags of tfvae train | --models classic,conv,...]
                [--sections matmul,conv,train,evaluate] [--json] [--out FILE]
    python -m tfvae.bench ...   (the same command)

The model measured is a run's (`--run-dir`: its config, and its weights for `evaluate`) or the one that the
model flags of `tfvae train` describe, untrained: it costs the same FLOPs. `--models` measures several of the
model family's members (MODELS) in one run, each with every section, into one report. Each section runs in its
own process, so that its peak memory (os.wait4) is its own; parent and child exchange JSON files.

- matmul: float32 matrix-product throughput (TensorFlow's sgemm) at every product of the model's training
  step and of its evaluation, as `tfvae.flops` finds them in the built model; and for large squares;
- conv: convolution throughput (TensorFlow's oneDNN kernels) at every convolution of the model: the forward
  pass and both gradients (`tf.nn.conv2d`, `tf.nn.conv2d_transpose`, Conv2DBackpropFilter);
- train: seconds per epoch and images/s of `fit` on the training images, for each variant of the levers
  (XLA, steps_per_execution); training only, no validation pass; the median of the epochs after the first
  (which traces and compiles);
- evaluate: `tfvae.evaluate` with K importance samples on test images, as `tfvae evaluate` runs it;
- profile: where a training epoch goes: the kernel products alone, the networks forward and backward,
  + Adam, the full train step, each run for one epoch's steps inside one graph call;
- strategies: seconds per `tfvae train` epoch of the default model under each strategy (one device, 2 logical
  CPU devices, 2 worker processes on 127.0.0.1), with and without --jit-compile;
- quality (needs --run-dir, a finished or stopped run): time to quality, the training time until the run's test log
  p(x) passes --thresholds, estimated at every kept epoch (tfvae.quality; train with --keep-checkpoints 0 to
  keep them all): the ELBO over all test images, plus the gap to log p(x) at K on the first --eval-images,
  scaled to the full test set by an --evaluation of the run's model;
- sample: an export's figures: file sizes and quantization cost (manifest.json), decode latency on one CPU
  thread (each TFLite decoder with the LiteRT interpreter, the SavedModel's `decode` signature), the prior's
  share of a 64-image grid (prior.npz), and with --edge-tfvae the wall time of `tfvae sample` without TensorFlow.

The floors: a workload is what a training epoch (or an evaluation) runs, as a list of kernel products with
their counts (`tfvae.flops`); its floor is the sum over them of FLOPs / the throughput measured at that
product's own shape. A ratio of 1 would be every cycle spent in matrix products and convolutions at full
speed; element-wise work, the optimizer and the likelihood are not counted.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

from tfvae.config import Config
from tfvae.errors import ConfigError, TfvaeError
from tfvae.export import layout  # names only: no TensorFlow
from tfvae.io import atomic_write_text
from tfvae.quality import DEFAULT_GAP_EPOCHS, DEFAULT_THRESHOLDS  # NumPy only

__all__ = [
    "SECTIONS",
    "VARIANTS",
    "MODELS",
    "BenchOptions",
    "model_config",
    "run",
    "run_models",
    "table",
    "models_table",
    "machine",
    "workloads",
    "floor_seconds",
    "decode_latency",
    "prior_latency",
    "sample_wall_time",
    "main",
]

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
# The model family, by name, for `--models`: a preset and the values that differ from it (the quality table's rows).
MODELS = {
    "classic": ("classic", {}),
    "mlp-iwae5": ("classic", {"objective": "iwae", "train_samples": 5}),
    "mlp-iaf": ("classic", {"posterior": "iaf"}),
    "mlp-vamp": ("classic", {"prior": "vamp"}),
    "conv": ("classic", {"architecture": "conv"}),
    "conv-iwae5": ("classic", {"architecture": "conv", "objective": "iwae", "train_samples": 5}),
    "best": ("best", {}),
}
GRID = 64  # images in one sample grid
# Throughput measurement: independent products per graph call, enough that dispatch costs nothing.
_FLOPS_PER_CALL = 1e9
_MAX_PER_CALL = 64
_MAX_INPUT_BYTES = 256 * 2**20
# CPU flags worth a line in the report: what the kernels can use.
_VECTOR_FLAGS = ("avx", "amx", "fma", "f16c", "sse4")


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """What to measure, and how long; saved as JSON for the child processes."""

    config: Config  # the model measured, its objective, batch size and dataset
    run_dir: Optional[str] = None  # a trained run: `evaluate` uses its weights (None: an untrained model)
    data_dir: Optional[str] = None  # local data laid out like shared/data (None: the config's, then TFDS)
    sections: tuple = ("matmul", "conv", "train", "evaluate")  # run in this order, each in its own process
    variants: tuple = tuple(VARIANTS)  # train: the levers measured, keys of VARIANTS
    epochs: int = 4  # train: epochs per variant, the first one not timed
    limit: Optional[int] = None  # train: the first N training images only (None: all)
    eval_images: int = 10_000  # evaluate: the first N test images
    importance_samples: int = 5000  # evaluate: K
    seconds: float = 1.0  # matmul, conv: time per throughput measurement
    export_dir: Optional[str] = None  # sample: an export directory (`tfvae export`)
    edge_tfvae: Optional[str] = None  # sample: the `tfvae` of an environment without TensorFlow
    runs: int = 11  # sample: runs of `tfvae sample` (median)
    repeats: int = 1000  # sample: decoder calls per latency (median)
    refine_steps: int = 1000  # gaps: Adam steps on each image's posterior
    thresholds: tuple = DEFAULT_THRESHOLDS  # quality: nats
    gap_epochs: tuple = DEFAULT_GAP_EPOCHS  # quality: epochs whose gap is measured, besides the run's model
    evaluation: Optional[str] = None  # quality: `tfvae evaluate --json` of the run's model on all test images
    verbose: bool = False  # show the child processes' stderr

    def __post_init__(self):
        unknown = [s for s in self.sections if s not in SECTIONS]
        if unknown:
            raise ConfigError(f"unknown section {unknown[0]!r}; choose from: {', '.join(SECTIONS)}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"unknown variant {unknown[0]!r}; choose from: {', '.join(VARIANTS)}")
        for name in ("epochs", "eval_images", "importance_samples", "runs", "repeats"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        if not self.seconds > 0:
            raise ConfigError(f"--seconds must be positive, got {self.seconds}")
        if self.refine_steps < 0:
            raise ConfigError(f"--refine-steps must be at least 0, got {self.refine_steps}")
        if "gaps" in self.sections and not self.run_dir:
            raise ConfigError("the gaps section needs --run-dir (a trained run): it measures its encoder's inference gaps")
        if "quality" in self.sections and not self.run_dir:
            raise ConfigError("the quality section needs --run-dir (a trained run): it evaluates the run's epochs")
        if any(isinstance(e, bool) or not isinstance(e, int) or e < 1 for e in self.gap_epochs):
            raise ConfigError(f"--gap-epochs must be positive integers, got {list(self.gap_epochs)}")
        if "sample" in self.sections and not self.export_dir:
            raise ConfigError("the sample section needs --export-dir (an export written by `tfvae export`)")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "config": self.config.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> "BenchOptions":
        return cls(**{**values, "config": Config.from_dict(values["config"]),
                      "sections": tuple(values["sections"]), "variants": tuple(values["variants"]),
                      "thresholds": tuple(values["thresholds"]), "gap_epochs": tuple(values["gap_epochs"])})


# --------------------------------------------------------------------------- workloads and floors


def workloads(config: Config, vae=None, *, train_examples: int, eval_examples: int, importance_samples: int) -> dict:
    """What the model costs: {"train": one epoch of `train_examples`, "evaluate": one evaluation of
    `eval_examples` images at K = `importance_samples`}, each a workload (`_workload`).

    Counted by `tfvae.flops` from the built model (`vae`, else one built from `config`): the train step at the
    config's batch size, forward and backward, × train_examples / batch size; the evaluation's calls at the
    evaluator's own batch B and chunk C (`tfvae.evaluate.evaluation_sizes`): the encoder once per batch, the
    decoder (and a flow posterior's sample) once per chunk of B · C samples, a VampPrior's pseudo-inputs once.
    """
    from tfvae import flops
    from tfvae.evaluate import evaluation_sizes

    if vae is None:
        from tfvae.models import build_vae

        vae = build_vae(config)
    steps = train_examples / config.batch_size
    train = [(p, call.network, steps) for call in flops.training_calls(vae, config.batch_size)
             for p in call.training_products()]
    batch, chunk = evaluation_sizes(eval_examples, importance_samples)
    runs = {"per_batch": eval_examples / batch, "per_chunk": eval_examples * importance_samples / (batch * chunk),
            "once": 1}
    evaluate = [(call.forward, call.network, runs[when])
                for when, calls in flops.evaluation_calls(vae, batch, chunk).items() for call in calls]
    return {
        "train": _workload(train) | {"examples": train_examples, "flops_per_image": _total(train) / train_examples},
        "evaluate": _workload(evaluate) | {
            "examples": eval_examples, "importance_samples": importance_samples, "batch_size": batch,
            "chunk_size": chunk, "flops_per_sample": _total(evaluate) / (eval_examples * importance_samples),
        },
    }


def _total(counted) -> float:
    return sum(product.flops * calls for product, _, calls in counted)


def _workload(counted) -> dict:
    """(product, network, calls) triples -> {"flops": total, "flops_by_network": {...}, "products": {key: {op,
    shape, flops (one call), calls}}}, products with the same key merged."""
    products, by_network = {}, {}
    for product, network, calls in counted:
        entry = products.setdefault(product.key, {**product.to_dict(), "calls": 0.0})
        entry["calls"] += calls
        by_network[network] = by_network.get(network, 0.0) + product.flops * calls
    return {"flops": _total(counted), "flops_by_network": by_network, "products": products}


def floor_seconds(workload: dict, gflops: dict) -> tuple:
    """(seconds, missing): sum over the workload's products of calls · FLOPs / measured throughput, and the
    products with no measurement (then seconds is None)."""
    missing = sorted(key for key in workload["products"] if key not in gflops)
    if missing:
        return None, missing
    return sum(e["calls"] * e["flops"] / (gflops[key] * 1e9) for key, e in workload["products"].items()), []


def _with_floor(result: dict, gflops: dict) -> dict:
    """A train or evaluate result with its floor and its time as a multiple of it."""
    seconds = result["seconds_per_epoch"] if "seconds_per_epoch" in result else result["seconds"]
    floor, missing = floor_seconds(result["workload"], gflops)
    return result | {"floor_seconds": floor, "times_floor": seconds / floor if floor else None,
                     "floor_missing": missing}


# --------------------------------------------------------------------------- throughput (child processes)


def _matmul_inputs(product, per_call: int):
    """(m, k) @ (k, n): per_call independent left-hand sides."""
    import tensorflow as tf

    m, k, n = product.shape
    a, b = tf.random.normal([per_call, m, k]), tf.random.normal([k, n])
    return lambda i: tf.matmul(a[i], b)


def _conv_inputs(product, per_call: int):
    """One of the three convolution kernels on per_call independent x (B, H, W, C_in) or dy (B, H_out, W_out, C_out)."""
    import tensorflow as tf

    from tfvae import flops

    inputs, kernel, outputs, strides, padding = product.shape
    x, dy = tf.random.normal([per_call, *inputs]), tf.random.normal([per_call, *outputs])
    w = tf.random.normal(kernel)
    kernels = {
        flops.CONV2D: lambda i: tf.nn.conv2d(x[i], w, strides, padding),
        flops.CONV2D_BACKPROP_INPUT: lambda i: tf.nn.conv2d_transpose(dy[i], w, inputs, strides, padding),
        flops.CONV2D_BACKPROP_FILTER: lambda i: tf.raw_ops.Conv2DBackpropFilter(
            input=x[i], filter_sizes=kernel, out_backprop=dy[i], strides=[1, *strides, 1], padding=padding),
    }
    return kernels[product.op]


def _input_bytes(product) -> int:
    """float32 bytes of one call's inputs (the budget for independent copies)."""
    if product.op == "matmul":
        m, k, _ = product.shape
        return 4 * m * k
    inputs, _, outputs, _, _ = product.shape
    return 4 * (math.prod(inputs) + math.prod(outputs))


def measure_gflops(product, seconds: float) -> float:
    """float32 throughput of `product` at its own shape, in GFLOP/s: independent copies per graph call (so that
    no dispatch cost is counted, and none can be merged), called for `seconds` after one warm-up call."""
    import tensorflow as tf

    per_call = max(1, min(_MAX_PER_CALL, round(_FLOPS_PER_CALL / product.flops),
                          _MAX_INPUT_BYTES // _input_bytes(product)))
    kernel = (_matmul_inputs if product.op == "matmul" else _conv_inputs)(product, per_call)

    @tf.function
    def step():
        # Summed so that none can be skipped; the sums cost one pass over each output, not a product.
        return tf.add_n([tf.reduce_sum(kernel(i)) for i in range(per_call)])

    step().numpy()
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        step().numpy()
        calls += 1
    return product.flops * per_call * calls / (time.perf_counter() - start) / 1e9


def _throughput(options: BenchOptions, ops: set) -> dict:
    """Throughput at every product of the model's workloads whose op is in `ops`, and time-weighted over each."""
    from tfvae import flops

    loads = workloads(options.config, train_examples=options.config.batch_size, eval_examples=options.eval_images,
                      importance_samples=options.importance_samples)
    products = {key: flops.Product.from_dict(entry) for load in loads.values()
                for key, entry in load["products"].items() if entry["op"] in ops}
    gflops = {key: measure_gflops(product, options.seconds) for key, product in sorted(products.items())}
    weighted = {}  # workload -> its products' FLOPs over their time at the measured rates
    for name, load in loads.items():
        mine = {key: e for key, e in load["products"].items() if key in gflops}
        if mine:
            work = sum(e["calls"] * e["flops"] for e in mine.values())
            weighted[name] = work / sum(e["calls"] * e["flops"] / gflops[k] for k, e in mine.items())
    return {"gflops": gflops, "weighted_gflops": weighted}


def section_matmul(options: BenchOptions) -> dict:
    from tfvae import flops

    squares = {str(n): measure_gflops(flops.Product(flops.MATMUL, (n, n, n)), options.seconds)
               for n in (2048, 4096)}  # the machine's peak, for reference
    return _throughput(options, {flops.MATMUL}) | {"square_gflops": squares}


def section_conv(options: BenchOptions) -> dict:
    from tfvae import flops

    return _throughput(options, {flops.CONV2D, flops.CONV2D_BACKPROP_INPUT, flops.CONV2D_BACKPROP_FILTER})


# --------------------------------------------------------------------------- training and evaluation


def _training_images(options: BenchOptions, config: Config):
    """(images, dynamic) of the run's training split, the first --limit (or config.limit) only."""
    from tfvae.data import config_splits

    splits = config_splits(config, options.data_dir)
    limit = options.limit or config.limit
    return splits.train[:limit] if limit else splits.train, splits.dynamic


def section_train(options: BenchOptions, variant: str) -> dict:
    import tensorflow as tf
    import tf_keras as tfk

    from tfvae.data import make_training_dataset, steps_per_epoch
    from tfvae.train import compile_vae

    from tfvae.distribute import configure_devices

    images, dynamic = _training_images(options, options.config)
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

    data = make_training_dataset(images, config.batch_size, seed=0, epochs=options.epochs, dynamic=dynamic)
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


def section_evaluate(options: BenchOptions) -> dict:
    from tfvae.evaluate import evaluate_vae, split_images

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


def section_profile(options: BenchOptions) -> dict:
    """Where a training epoch's time goes: each level of the step run for one epoch's steps inside one graph call."""
    import tensorflow as tf

    from tfvae import flops
    from tfvae.data import steps_per_epoch
    from tfvae.train import compile_vae

    config = options.config
    images, _ = _training_images(options, config)
    steps = steps_per_epoch(len(images), config.batch_size)
    vae = compile_vae(config, tf.distribute.get_strategy())
    variables = vae.trainable_variables
    vae.optimizer.apply_gradients([(tf.zeros_like(v), v) for v in variables])  # create Adam's slots outside the graphs
    x = tf.cast(images[: config.batch_size], tf.float32)  # (B, H, W, C)
    products = [flops.Product.from_dict(e) for e in workloads(
        config, vae, train_examples=config.batch_size, eval_examples=1, importance_samples=1)["train"]["products"].values()]
    kernels = [(_matmul_inputs if p.op == flops.MATMUL else _conv_inputs)(p, 1) for p in products]

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
        from tfvae.data import make_training_dataset

        start = time.perf_counter()
        for _ in make_training_dataset(images, config.batch_size, seed=0, epochs=1):
            pass
        result["input_pipeline_only"] = time.perf_counter() - start
    return {"steps": steps, "seconds_per_epoch": result}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn().numpy()
    return time.perf_counter() - start


def section_strategies(options: BenchOptions) -> dict:
    """Seconds per `tfvae train` epoch of the default model (mean of epochs 2 to --epochs) under each strategy,
    with and without XLA."""
    import socket

    from tfvae.runs import TIMING_FILE, read_history

    def train(run_dir, flags, env=None):
        command = [sys.executable, "-m", "tfvae.cli.main", "train", "--epochs", str(options.epochs), "--verbose", "0",
                   "--run-dir", run_dir, *flags]
        if options.data_dir:
            command += ["--data-dir", options.data_dir]
        return subprocess.Popen(command, env={**_child_env(), **(env or {})},
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


# --------------------------------------------------------------------------- sampling: an export's figures


def decode_latency(decode, latent_dim: int, batch: int, repeats: int, warmup: int = 20) -> float:
    """Median seconds of `decode(z)` for z of shape (batch, D), fresh z each call."""
    import numpy as np

    zs = np.random.default_rng(0).standard_normal((repeats + warmup, batch, latent_dim)).astype(np.float32)
    times = []
    for i, z in enumerate(zs):
        started = time.perf_counter()
        decode(z)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def prior_latency(directory: str, latent_dim: int, repeats: int) -> dict:
    """Median seconds to draw a grid's z: from the export's prior.npz and from N(0, I); and to load prior.npz."""
    import numpy as np

    from tfvae.mixture import Mixture

    path = os.path.join(directory, layout.PRIOR_FILE)
    if not os.path.isfile(path):
        return {}
    loads = []
    for _ in range(20):
        started = time.perf_counter()
        prior = Mixture.load(path, latent_dim)
        loads.append(time.perf_counter() - started)
    rng = np.random.default_rng(0)

    def median_draw(mixture):
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            mixture.sample(rng, GRID)
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    return {"components": prior.components, "load": statistics.median(loads), "prior": median_draw(prior),
            "standard_normal": median_draw(Mixture.standard_normal(latent_dim))}


def sample_wall_time(tfvae: str, decoder: str, runs: int) -> list:
    """Seconds from process start to exit for `tfvae sample --model decoder`, one per run."""
    seconds = []
    with tempfile.TemporaryDirectory() as directory:
        for i in range(runs):
            started = time.perf_counter()
            subprocess.run(
                [tfvae, "sample", "--model", decoder, "--out", os.path.join(directory, f"s{i}.png")],
                check=True, capture_output=True,
            )
            seconds.append(time.perf_counter() - started)
    return seconds


def _tflite_latencies(directory: str, latent_dim: int, repeats: int) -> dict:
    from tfvae.export.litert import TFLiteDecoder

    rows = {}
    for name in [layout.DECODER_FILE, *layout.QUANTIZED_DECODER_FILES.values()]:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            decoder = TFLiteDecoder(path, num_threads=1)
            rows[name] = {f"batch_{b}": decode_latency(decoder.decode, latent_dim, b, repeats) for b in (1, GRID)}
    return rows


def _saved_model_latency(directory: str, latent_dim: int, repeats: int) -> dict:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran in this process (a test): its thread pools are fixed
        print("warning: TensorFlow was already initialised; the SavedModel timing is not on one thread", file=sys.stderr)
    from tfvae.export.savedmodel import SavedModelDecoder

    decoder = SavedModelDecoder(os.path.join(directory, layout.SAVED_MODEL_DIR))
    return {f"batch_{b}": decode_latency(decoder.decode, latent_dim, b, repeats) for b in (1, GRID)}


def section_sample(options: BenchOptions) -> dict:
    """The export's figures; TensorFlow is imported only for the SavedModel timing, after the others."""
    directory = options.export_dir
    path = os.path.join(directory, layout.MANIFEST_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} cannot be read ({e}): is --export-dir an export written by `tfvae export`?") from None
    latent_dim = manifest["latent_dim"]
    results = {
        "latent_dim": latent_dim,
        "files": {name: entry["bytes"] for name, entry in manifest["files"].items()},
        "parity": manifest["parity"],
        "quantization": manifest.get("quantization"),
        "latency_seconds": _tflite_latencies(directory, latent_dim, options.repeats),
        "prior_seconds": prior_latency(directory, latent_dim, options.repeats),
    }
    if options.edge_tfvae:  # before TensorFlow is loaded into this process
        times = sample_wall_time(options.edge_tfvae, os.path.join(directory, layout.DECODER_FILE), options.runs)
        results["sample_wall_seconds"] = {"median": statistics.median(times), "min": min(times), "max": max(times),
                                          "runs": len(times)}
    results["latency_seconds"][layout.SAVED_MODEL_DIR] = _saved_model_latency(directory, latent_dim, options.repeats)
    return results


def section_gaps(options: BenchOptions) -> dict:
    """A trained run's inference gaps on the first --eval-images test images (tfvae.gaps)."""
    from tfvae.evaluate import split_images
    from tfvae.gaps import inference_gaps
    from tfvae.runs import load_vae

    config, vae = load_vae(options.run_dir)
    images = split_images(config, "test", options.data_dir)
    if options.eval_images > len(images):
        raise ConfigError(f"--eval-images {options.eval_images} is larger than the {len(images)} test images")
    gaps = inference_gaps(config, vae, images[: options.eval_images], refine_steps=options.refine_steps,
                          importance_samples=options.importance_samples, progress=options.verbose)
    return gaps.to_dict()


def section_quality(options: BenchOptions) -> dict:
    """Time to quality of a finished (or stopped) run from its kept epochs (tfvae.quality)."""
    from tfvae.quality import time_to_quality

    return time_to_quality(options.run_dir, gap_images=options.eval_images,
                           importance_samples=options.importance_samples, gap_epochs=options.gap_epochs,
                           thresholds=options.thresholds, evaluation=options.evaluation, data_dir=options.data_dir,
                           progress=options.verbose)


SECTIONS = {
    "matmul": section_matmul,
    "conv": section_conv,
    "train": section_train,
    "evaluate": section_evaluate,
    "profile": section_profile,
    "strategies": section_strategies,
    "sample": section_sample,
    "gaps": section_gaps,
    "quality": section_quality,
}


# --------------------------------------------------------------------------- driver


def machine() -> dict:
    """The machine the figures belong to: CPUs, their model and vector flags, memory, versions."""
    from importlib import metadata

    cpu = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                cpu.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:  # not Linux
        pass
    memory = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            memory = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        pass
    versions = {}
    for package in ("tensorflow", "tf-keras", "tensorflow-probability", "ai-edge-litert", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu.get("model name") or platform.processor() or None,
        "cpu_flags": sorted(f for f in cpu.get("flags", "").split() if f.startswith(_VECTOR_FLAGS)),
        "memory_bytes": memory,
        "python": platform.python_version(),
        "versions": versions,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _child_env() -> dict:
    """The environment of a child process: quiet TensorFlow, and `python -m` not importing from the working
    directory (PYTHONSAFEPATH, Python 3.11+), so that a bench run inside another tfvae checkout measures the
    installed tfvae that started it, not that checkout's."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONSAFEPATH": "1"}


def _run_child(section: str, options: BenchOptions, options_path: str, variant: Optional[str] = None) -> dict:
    """Run one section in a fresh process; return its JSON result with its peak RSS added."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = out.name
    command = [sys.executable, "-m", "tfvae.bench", "--child", section, options_path, path, *([variant] if variant else [])]
    env = _child_env()
    try:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=None if options.verbose else subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        result = json.loads(text) if text else {"error": f"exit {process.returncode}"}
    finally:
        os.remove(path)
    if process.returncode != 0:
        return {"error": result.get("error", f"exit {process.returncode}"), "command": shlex.join(command)}
    return result | {"peak_rss_mb": usage.ru_maxrss / 1024}  # Linux reports KiB


def model_config(name: str, **explicit) -> Config:
    """The Config of MODELS[name], with `explicit` values (flags the user gave) overriding it.

    >>> model_config("conv-iwae5", latent_dim=2).train_samples
    5
    """
    from tfvae.presets import expand_preset

    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose from: {', '.join(MODELS)}")
    preset, values = MODELS[name]
    return expand_preset(preset, **{**values, **explicit})


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def run(options: BenchOptions, *, command: str = "", out: Optional[str] = None, log=None, on_section=None) -> dict:
    """Run the chosen sections, each in its own process; the report, floors joined in.

    Args:
      options: what to measure.
      command: the command line, recorded in the report.
      out: write the report here as JSON after every section (atomically), so a later failure loses nothing.
      log: called with a line of progress per section (default: none).
      on_section: called with the report so far after every section (`run_models` saves the whole report).

    Returns:
      {"machine", "date", "command", "model", sections..., "failed": [section names]}.
    """
    log = log or (lambda message: None)
    if out and not on_section:
        on_section = lambda report: _save(out, report)  # noqa: E731
    results = {"machine": machine(), "date": _now(), "command": command, "model": options.config.to_dict(),
               "run_dir": options.run_dir}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(options.to_dict(), f)
        options_path = f.name
    try:
        for section in options.sections:
            log(f"bench: {section} ...")
            if section == "train":
                results["train"] = [{"variant": v} | _run_child("train", options, options_path, v)
                                    for v in options.variants]
            else:
                results[section] = _run_child(section, options, options_path)
            for failed in _failures({section: results[section]}):
                log(f"bench: {failed} failed: {_error_of(results, failed)}")
            _join_floors(results)
            if on_section:
                on_section(results)
    finally:
        os.remove(options_path)
    results["failed"] = _failures(results)
    if on_section:
        on_section(results)
    return results


def run_models(models: dict, *, command: str = "", out: Optional[str] = None, log=None) -> dict:
    """`run` for each model of `models` ({name: BenchOptions}), in order, into one report.

    Returns:
      {"machine", "date", "command", "models": {name: run's report without the machine}, "failed": ["name:
      section", ...]}; written to `out` after every section of every model.
    """
    log = log or (lambda message: None)
    report = {"machine": machine(), "date": _now(), "command": command, "models": {}}

    def keep(name, results):
        report["models"][name] = {k: v for k, v in results.items() if k not in ("machine", "command")} | {
            "load_average": results["machine"]["load_average"]}  # at the model's start: was the machine idle?
        _save(out, report)

    for name, options in models.items():
        log(f"bench: model {name}")
        run(options, command=command, log=log, on_section=lambda results, name=name: keep(name, results))
    report["failed"] = [f"{name}: {section}" for name, results in report["models"].items()
                        for section in results["failed"]]
    _save(out, report)
    return report


def _save(out: Optional[str], report: dict) -> None:
    """Write the report as JSON to `out` (atomically), if given."""
    if out:
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")


def _failures(results: dict) -> list:
    names = []
    for name in SECTIONS:
        value = results.get(name)
        for i, entry in enumerate(value if isinstance(value, list) else [value] if value else []):
            if "error" in entry:
                names.append(f"{name} {entry.get('variant') or i}" if isinstance(value, list) else name)
    return names


def _error_of(results: dict, name: str) -> str:
    """The error message of a failed section, "train VARIANT" for one training variant."""
    section, _, variant = name.partition(" ")
    value = results[section]
    if isinstance(value, list):
        value = next((e for i, e in enumerate(value) if variant in (str(i), e.get("variant"))), value[0])
    return value["error"]


def _join_floors(results: dict) -> None:
    """Add each train and evaluate result's floor, from the throughput measured so far."""
    gflops = {**results.get("matmul", {}).get("gflops", {}), **results.get("conv", {}).get("gflops", {})}
    results["train"] = [_with_floor(r, gflops) if "workload" in r else r for r in results.get("train", [])]
    if "workload" in results.get("evaluate", {}):
        results["evaluate"] = _with_floor(results["evaluate"], gflops)
    if not results["train"]:
        del results["train"]


def _child(section: str, options_path: str, out_path: str, variant: Optional[str] = None) -> int:
    """Inside a child process: run one section, write its JSON (or {"error": ...} for a known failure)."""
    with open(options_path, encoding="utf-8") as f:
        options = BenchOptions.from_dict(json.load(f))
    try:
        result = SECTIONS[section](options, variant) if variant else SECTIONS[section](options)
    except TfvaeError as e:
        atomic_write_text(out_path, json.dumps({"error": str(e)}))
        return 1
    atomic_write_text(out_path, json.dumps(result))
    return 0


# --------------------------------------------------------------------------- the report


def _number(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _floor_cell(result: dict) -> str:
    if result.get("floor_seconds") is None:
        return "n/a (no throughput for " + ", ".join(result.get("floor_missing", [])[:2]) + ")" \
            if result.get("floor_missing") else "n/a"
    return f"{_number(result['times_floor'])} (floor {_number(result['floor_seconds'], 3)} s)"


def table(results: dict) -> str:
    """Every figure of a report as one markdown table."""
    m = results.get("machine")
    lines = [
        f"{m.get('cpu_model')}, {m.get('cpus')} CPUs ({' '.join(f for f in m.get('cpu_flags', []) if 'avx512' in f or 'amx' in f)}), "
        f"{results.get('date')}",
        "",
    ] if m else []  # a model of `run_models`: the machine is the report's
    lines += ["| figure | value |", "| --- | --- |"]
    row = lambda name, value: lines.append(f"| {name} | {value} |")  # noqa: E731
    for section, unit in (("matmul", "GFLOP/s"), ("conv", "GFLOP/s")):
        entry = results.get(section)
        if not entry or "error" in entry:
            continue
        for key, value in entry.get("gflops", {}).items():
            row(f"{section} `{key}` ({unit})", _number(value, 1))
        for name, value in entry.get("weighted_gflops", {}).items():
            row(f"{section} over the {name} workload's products, time-weighted ({unit})", _number(value, 1))
        for size, value in entry.get("square_gflops", {}).items():
            row(f"{section} {size}² square ({unit})", _number(value, 1))
        row(f"{section} peak memory (MB)", _number(entry.get("peak_rss_mb"), 0))
    for train in results.get("train", []):
        if "error" in train:
            continue
        load = train["workload"]
        row(f"train {train['variant']}: s/epoch, images/s, × floor, peak MB ({train['examples']:,} images, "
            f"{load['flops'] / 1e9:,.1f} GFLOP, {load['flops_per_image'] / 1e6:.2f} MFLOP/image)",
            f"{_number(train['seconds_per_epoch'], 3)}, {_number(train['images_per_second'], 0)}, "
            f"{_floor_cell(train)}, {_number(train['peak_rss_mb'], 0)}")
    e = results.get("evaluate")
    if e and "error" not in e:
        load = e["workload"]
        row(f"evaluate K={e['importance_samples']} on {e['examples']:,} images: s, images/s, × floor, peak MB "
            f"({load['flops'] / 1e9:,.1f} GFLOP, {load['flops_per_sample'] / 1e6:.3f} MFLOP/sample)",
            f"{_number(e['seconds'], 2)}, {_number(e['images_per_second'], 2)}, {_floor_cell(e)}, "
            f"{_number(e['peak_rss_mb'], 0)}")
    for name, seconds in results.get("profile", {}).get("seconds_per_epoch", {}).items():
        row(f"profile: {name.replace('_', ' ')} (s/epoch)", _number(seconds, 3))
    for name, value in results.get("strategies", {}).items():
        if name != "peak_rss_mb":
            row(f"strategy {name} (s/epoch)", value if isinstance(value, str) else _number(value))
    s = results.get("sample")
    if s and "error" not in s:
        for name, size in s["files"].items():
            row(f"sample: `{name}` (bytes)", f"{size:,}")
        cost = s.get("quantization")
        if cost:
            for name, entry in cost["decoders"].items():
                row(f"sample: `{name}` max abs diff in probs, ELBO change, log p(x) change ({cost['subset']})",
                    f"{s['parity'][name]['max_abs_diff_probs']:.2e}, {entry['elbo_change']:+.4f}, "
                    f"{entry['log_likelihood_change']:+.4f}")
        for name, by_batch in s["latency_seconds"].items():
            row(f"sample: `{name}` decode, one thread, median (µs per image; per {GRID}-image grid)",
                f"{by_batch['batch_1'] * 1e6:,.1f}; {by_batch[f'batch_{GRID}'] * 1e6:,.1f}")
        prior = s.get("prior_seconds")
        if prior:
            row(f"sample: z for a {GRID}-image grid, prior.npz ({prior['components']} components); N(0, I); "
                "loading prior.npz", f"{prior['prior'] * 1e6:,.1f} µs; {prior['standard_normal'] * 1e6:,.1f} µs; "
                f"{prior['load'] * 1e3:.2f} ms")
        wall = s.get("sample_wall_seconds")
        if wall:
            row(f"sample: `tfvae sample` without TensorFlow, start to PNG (s, median of {wall['runs']}; min, max)",
                f"{wall['median']:.3f}; {wall['min']:.3f}, {wall['max']:.3f}")
        row("sample peak memory (MB)", _number(s.get("peak_rss_mb"), 0))
    g = results.get("gaps")
    if g and "error" not in g:
        row(f"gaps on {g['examples']:,} test images (q refined {g['refine_steps']:,} steps, log p(x) K={g['importance_samples']}): "
            "ELBO[q], ELBO[q*], log p(x)",
            f"{_number(g['elbo'])}, {_number(g['refined_elbo'])}, {_number(g['log_likelihood'])} ± "
            f"{_number(g['log_likelihood_stderr'])}")
        row("gaps: total, amortisation, approximation (nats)",
            f"{_number(g['total_gap'])} = {_number(g['amortisation_gap'])} + {_number(g['approximation_gap'])}")
    q = results.get("quality")
    if q and "error" not in q:
        row(f"quality: r, the full test set's gap over the first {q['gap_images']:,} images' (K={q['importance_samples']})",
            f"{_number(q['ratio'], 3)} ({q['ratio_from']})")
        stopped = "" if q.get("finished", True) else " (the run was stopped there)"
        row(f"quality: estimated test log p(x) at the run's model, epoch {q['model_epoch']}{stopped}",
            _number(q["log_likelihood"][str(q["model_epoch"])]))
        for threshold, hit in q["crossings"].items():
            row(f"quality: first epoch at or above {threshold} nats: epoch, estimate, training time",
                "not reached" if hit is None else
                f"{hit['epoch']}, {_number(hit['log_likelihood'])} (epoch before: {_number(hit['previous'])}), "
                f"{hit['training_seconds'] / 60:.1f} min")
    for name in results.get("failed", []):
        row(f"{name} failed", _error_of(results, name).replace("|", "\\|"))
    return "\n".join(lines)


def models_table(report: dict) -> str:
    """A `run_models` report: one summary row per model, then each model's own table (`table`)."""
    m = report.get("machine", {})
    lines = [
        f"{m.get('cpu_model')}, {m.get('cpus')} CPUs, {report.get('date')}: `{report.get('command')}`",
        "",
        "| model | parameters | train: s/epoch, × floor, per variant | evaluate: images/s, × floor | peak MB |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, results in report["models"].items():
        trains = [t for t in results.get("train", []) if "error" not in t]
        train = "; ".join(f"{t['variant']} {_number(t['seconds_per_epoch'], 2)} s, {_number(t['times_floor'])}×"
                          for t in trains) or "n/a"
        e = results.get("evaluate") or {}
        evaluate = "n/a" if not e or "error" in e else \
            f"{_number(e['images_per_second'], 2)}, {_number(e['times_floor'])}× (K={e['importance_samples']})"
        peaks = [entry.get("peak_rss_mb") for entry in [*trains, e] if entry and "peak_rss_mb" in entry]
        parameters = f"{trains[0]['parameters']:,}" if trains and "parameters" in trains[0] else "n/a"
        lines.append(f"| {name} | {parameters} | {train} | {evaluate} | {_number(max(peaks), 0) if peaks else 'n/a'} |")
    for name in report.get("failed", []):
        lines.append(f"| {name} failed | | | | |")
    for name, results in report["models"].items():
        lines += ["", f"### {name}", "", table(results)]
    return "\n".join(lines)


def main(argv=None) -> int:
    """`python -m tfvae.bench ARGS` is `tfvae bench ARGS`; `--child` is how the driver starts a section."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--child"]:
        return _child(*argv[1:])
    from tfvae.cli.main import cli

    return cli.main(["bench", *argv], prog_name="tfvae")


if __name__ == "__main__":
    sys.exit(main())

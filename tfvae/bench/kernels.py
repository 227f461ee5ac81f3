"""Kernel throughput and FLOP floors: the `matmul` and `conv` sections, and the floor of a workload.

A workload is what a training epoch (or an evaluation) runs, as a list of kernel products with their
counts (`tfvae.flops`, from the built model); its floor is the sum over them of FLOPs / the throughput
measured at that product's own shape. A ratio of 1 would be every cycle spent in matrix products and
convolutions at full speed; element-wise work, the optimizer and the likelihood are not counted.

- matmul: float32 matrix-product throughput (TensorFlow's sgemm) at every product of the model's training
  step and of its evaluation; and for large squares, the machine's peak;
- conv: convolution throughput (TensorFlow's oneDNN kernels) at every convolution of the model: the forward
  pass and both gradients (`tf.nn.conv2d`, `tf.nn.conv2d_transpose`, Conv2DBackpropFilter).
"""

from __future__ import annotations

import dataclasses
import math
import time

from tfvae.bench.options import EVAL_IMAGES, IMPORTANCE_SAMPLES, at_least
from tfvae.config import Config
from tfvae.errors import ConfigError

__all__ = ["ThroughputOptions", "workloads", "floor_seconds", "join_floors", "product_kernel", "measure_gflops",
           "section_matmul", "section_conv"]

# Throughput measurement: independent products per graph call, enough that dispatch costs nothing.
_FLOPS_PER_CALL = 1e9
_MAX_PER_CALL = 64
_MAX_INPUT_BYTES = 256 * 2**20
_SQUARES = (2048, 4096)  # matmul: n for the n x n x n products that show the machine's peak


@dataclasses.dataclass(frozen=True)
class ThroughputOptions:
    """matmul, conv: what is measured, and for how long."""

    config: Config  # the model whose training step and evaluation run the products measured
    seconds: float = 1.0  # time per throughput measurement
    eval_images: int = EVAL_IMAGES  # the evaluation workload's images (they set its batch and chunk sizes)
    importance_samples: int = IMPORTANCE_SAMPLES  # the evaluation workload's K

    def __post_init__(self):
        at_least(self, 1, "eval_images", "importance_samples")
        if not self.seconds > 0:
            raise ConfigError(f"--seconds must be positive, got {self.seconds}")


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


def join_floors(results: dict) -> None:
    """Add to a report's train and evaluate results their floors, from the throughput measured so far."""
    gflops = {**results.get("matmul", {}).get("gflops", {}), **results.get("conv", {}).get("gflops", {})}
    results["train"] = [_with_floor(r, gflops) if "workload" in r else r for r in results.get("train", [])]
    if "workload" in results.get("evaluate", {}):
        results["evaluate"] = _with_floor(results["evaluate"], gflops)
    if not results["train"]:
        del results["train"]


# --------------------------------------------------------------------------- throughput (in a child process)


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


def product_kernel(product, per_call: int):
    """`i -> the product's kernel on the i-th of per_call independent random inputs`, at the product's shape."""
    from tfvae import flops

    return (_matmul_inputs if product.op == flops.MATMUL else _conv_inputs)(product, per_call)


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
    kernel = product_kernel(product, per_call)

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


def _throughput(options: ThroughputOptions, ops: set) -> dict:
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


def section_matmul(options: ThroughputOptions) -> dict:
    from tfvae import flops

    squares = {str(n): measure_gflops(flops.Product(flops.MATMUL, (n, n, n)), options.seconds) for n in _SQUARES}
    return _throughput(options, {flops.MATMUL}) | {"square_gflops": squares}


def section_conv(options: ThroughputOptions) -> dict:
    from tfvae import flops

    return _throughput(options, {flops.CONV2D, flops.CONV2D_BACKPROP_INPUT, flops.CONV2D_BACKPROP_FILTER})

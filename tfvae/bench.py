"""How close tfvae runs to this machine's limit: training, evaluation and sampling against FLOP floors.

    python -m tfvae.bench --data-dir ../shared/data --out bench.json [--sections matmul,train,evaluate,sample]

Sections, each in its own process (so that each peak memory is its own, read with os.wait4):

- matmul: float32 matrix-multiply throughput with TensorFlow, at the shapes of a training step (batch 128)
  and of the evaluation inner loop, and for large square matrices;
- train: seconds per epoch and images/s of the default 784-500-20 MLP on the 50,000 training images, for each
  variant of the levers (XLA, steps_per_execution); training only, the validation pass excluded; the median
  of the epochs after the first (which traces and compiles);
- evaluate: `tfvae.evaluate` with K importance samples on test images, seconds and images/s;
- profile: where a training epoch goes: the matrix products alone, the networks forward and backward, + Adam,
  the full VAE train step, each run for one epoch's steps inside one graph call;
- strategies: seconds per `tfvae train` epoch under each strategy (one device, 2 logical CPU devices, 2 worker
  processes on 127.0.0.1), with and without --jit-compile;
- sample: `python -m tfvae.export.benchmark` on an export (TFLite decode latency, `tfvae sample` wall time).

The floors: FLOPs counted from the layer shapes (dense layers only: the element-wise work is not counted), over
the measured matmul throughput at the same shapes. A ratio of 1 would be every cycle spent in matrix products.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

from tfvae.io import atomic_write_text

__all__ = ["dense_shapes", "training_products", "training_flops_per_image", "evaluation_flops_per_sample", "main"]

TRAIN_BATCH = 128
EVAL_ROWS = 8192  # decoder rows per call in the evaluation inner loop (tfvae.evaluate's chunking)
VARIANTS = {  # the levers, spelled out (the default config is "spe16")
    "plain": {"jit_compile": False, "steps_per_execution": 1},
    "jit": {"jit_compile": True, "steps_per_execution": 1},
    "spe16": {"jit_compile": False, "steps_per_execution": 16},
    "jit+spe16": {"jit_compile": True, "steps_per_execution": 16},
}


def dense_shapes(latent_dim: int = 20, hidden_units: int = 500, pixels: int = 784) -> dict:
    """(inputs, outputs) of each dense layer of the MLP VAE."""
    return {
        "encoder": [(pixels, hidden_units), (hidden_units, 2 * latent_dim)],
        "decoder": [(latent_dim, hidden_units), (hidden_units, pixels)],
    }


def training_flops_per_image(latent_dim: int = 20, hidden_units: int = 500) -> int:
    """Forward + backward FLOPs of one image: per layer 2·in·out forward, as much for the weight gradient, and
    as much again for the input gradient except at the first layer (the data needs none)."""
    shapes = dense_shapes(latent_dim, hidden_units)
    layers = shapes["encoder"] + shapes["decoder"]
    forward = sum(2 * i * o for i, o in layers)
    weight_grads = forward
    input_grads = forward - 2 * layers[0][0] * layers[0][1]
    return forward + weight_grads + input_grads


def evaluation_flops_per_sample(latent_dim: int = 20, hidden_units: int = 500) -> int:
    """Decoder forward FLOPs for one z_k (the encoder runs once per image, K times fewer: not counted)."""
    return sum(2 * i * o for i, o in dense_shapes(latent_dim, hidden_units)["decoder"])


# --------------------------------------------------------------------------- sections (run in child processes)


def _matmul_gflops(m: int, k: int, n: int, seconds: float = 1.0, per_call: int = 16) -> float:
    """float32 (m, k) @ (k, n) throughput, `per_call` independent products per graph call (no dispatch cost)."""
    import tensorflow as tf

    a, b = tf.random.normal([per_call, m, k]), tf.random.normal([k, n])

    @tf.function
    def step():
        # Independent products, summed so that none can be skipped; the sums cost m*n, not m*k*n.
        return tf.add_n([tf.reduce_sum(tf.matmul(a[i], b)) for i in range(per_call)])

    step()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step().numpy()
        calls += 1
    return 2 * m * k * n * per_call * calls / (time.perf_counter() - start) / 1e9


def training_products(batch: int = TRAIN_BATCH, latent_dim: int = 20, hidden_units: int = 500) -> list:
    """(m, k, n) of every matrix product of one training step: per layer, forward x·W (B, in, out), weight
    gradient xᵀ·dy (in, B, out), and input gradient dy·Wᵀ (B, out, in) except at the first layer."""
    shapes = dense_shapes(latent_dim, hidden_units)
    layers = shapes["encoder"] + shapes["decoder"]
    products = []
    for index, (i, o) in enumerate(layers):
        products += [(batch, i, o), (i, batch, o)] + ([(batch, o, i)] if index else [])
    return products


def section_matmul(args) -> dict:
    def weighted(products):
        """Throughput of one pass over `products`: total FLOPs over the sum of their measured times."""
        flops = [2 * m * k * n for m, k, n in products]
        seconds = [f / (_matmul_gflops(m, k, n, args.seconds) * 1e9) for f, (m, k, n) in zip(flops, products)]
        return sum(flops) / sum(seconds) / 1e9

    decoder = dense_shapes()["decoder"]
    return {
        "train_shapes_gflops": weighted(training_products()),
        "eval_shapes_gflops": weighted([(EVAL_ROWS, i, o) for i, o in decoder]),
        "square_2048_gflops": _matmul_gflops(2048, 2048, 2048, args.seconds, per_call=2),
        "square_4096_gflops": _matmul_gflops(4096, 4096, 4096, args.seconds * 2, per_call=1),
    }


def section_train(args) -> dict:
    import tensorflow as tf
    import tf_keras as tfk

    from tfvae.config import Config
    from tfvae.data import load_splits, make_training_dataset, steps_per_epoch
    from tfvae.train import compile_vae

    config = Config(**VARIANTS[args.variant])
    images = load_splits(config.dataset, args.data_dir).train
    vae = compile_vae(config, tf.distribute.get_strategy())
    seconds = []

    class EpochTimer(tfk.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)

    data = make_training_dataset(images, config.batch_size, seed=0, epochs=args.epochs)
    history = vae.fit(
        data, epochs=args.epochs, steps_per_epoch=steps_per_epoch(len(images), config.batch_size),
        callbacks=[EpochTimer()], verbose=0,
    ).history
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    return {
        "variant": args.variant,
        "epoch_seconds": seconds,
        "seconds_per_epoch": steady,
        "images_per_second": len(images) / steady,
        "train_elbo": history["elbo"],
        "flops_per_epoch": training_flops_per_image() * len(images),
    }


def section_evaluate(args) -> dict:
    from tfvae.config import Config
    from tfvae.data import load_splits
    from tfvae.evaluate import evaluate_images

    if args.run_dir:
        from tfvae.runs import load_vae

        config, vae = load_vae(args.run_dir)
    else:  # an untrained default model costs the same FLOPs
        from tfvae.models import build_vae

        config = Config()
        vae = build_vae(config)
    images = load_splits(config.dataset, args.data_dir).test[: args.eval_images]
    # traceable: the compiled path that `tfvae evaluate` takes for a Keras model.
    result = evaluate_images(
        vae.encode_params, vae.decode_logits, images, importance_samples=args.importance_samples, traceable=True
    )
    flops = evaluation_flops_per_sample(config.latent_dim, config.hidden_units) * args.importance_samples * len(images)
    return {
        "examples": len(images),
        "importance_samples": args.importance_samples,
        "seconds": result.seconds,
        "images_per_second": len(images) / result.seconds,
        "flops": flops,
        "log_likelihood": result.log_likelihood,
        "elbo": result.elbo,
    }


def section_profile(args) -> dict:
    """Where a training epoch's time goes: each level of the step run for one epoch's steps inside one graph call."""
    import tensorflow as tf

    from tfvae.config import Config
    from tfvae.train import compile_vae

    steps = -(-50000 // TRAIN_BATCH)  # one epoch of the default run
    vae = compile_vae(Config(), tf.distribute.get_strategy())
    variables = vae.trainable_variables
    vae.optimizer.apply_gradients([(tf.zeros_like(v), v) for v in variables])  # create Adam's slots outside the graphs
    x = tf.cast(tf.random.uniform([TRAIN_BATCH, 28, 28, 1]) < 0.13, tf.float32)
    products = [(tf.random.normal([m, k]), tf.random.normal([k, n])) for m, k, n in training_products()]

    def epoch_of(body):
        @tf.function
        def run():
            return tf.while_loop(lambda i, acc: i < steps, lambda i, acc: (i + 1, acc + body()), (0, 0.0))[1]

        return run

    def networks(update):
        with tf.GradientTape() as tape:
            params = vae.encoder(x)
            loss = tf.reduce_sum(vae.decoder(params[:, : vae.latent_dim])) + tf.reduce_sum(params)
        grads = tape.gradient(loss, variables)
        if update:
            vae.optimizer.apply_gradients(zip(grads, variables))
        return loss + tf.add_n([tf.reduce_sum(g) for g in grads])

    levels = {
        "matmul_products_only": lambda: tf.add_n([tf.reduce_sum(tf.matmul(a, b)) for a, b in products]),
        "networks_forward_backward": lambda: networks(False),
        "plus_adam": lambda: networks(True),
        "full_train_step": lambda: vae.train_step((x, x))["elbo"],
    }
    result = {}
    for name, body in levels.items():
        run = epoch_of(body)
        run()  # trace
        result[name] = min(_timed(run) for _ in range(3))
    if args.data_dir:  # the input pipeline alone: one epoch of batches, produced and discarded
        from tfvae.data import load_splits, make_training_dataset

        images = load_splits("binarized_mnist", args.data_dir).train
        start = time.perf_counter()
        for _ in make_training_dataset(images, TRAIN_BATCH, seed=0, epochs=1):
            pass
        result["input_pipeline_only"] = time.perf_counter() - start
    return {"steps": steps, "seconds_per_epoch": result}


def _timed(fn) -> float:
    start = time.perf_counter()
    fn().numpy()
    return time.perf_counter() - start


def section_strategies(args) -> dict:
    """Seconds per `tfvae train` epoch (mean of epochs 2 to --epochs) under each strategy, with and without XLA."""
    import socket

    from tfvae.runs import TIMING_FILE, read_history

    def train(run_dir, options, env=None):
        command = [sys.executable, "-m", "tfvae.cli.main", "train", "--epochs", str(args.epochs), "--verbose", "0",
                   "--run-dir", run_dir, *options]
        if args.data_dir:
            command += ["--data-dir", args.data_dir]
        return subprocess.Popen(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
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
                    options = ["--strategy", "mirrored", "--cpu-devices", "2"] if name == "mirrored" else []
                    processes = [train(run_dir, options + [jit])]
                errors = [p.communicate()[1] for p in processes]
                rows = read_history(run_dir, TIMING_FILE) if all(p.returncode == 0 for p in processes) else []
                key = f"{name} {jit}"
                if rows:
                    results[key] = statistics.mean(r["seconds"] for r in rows[1:]) if len(rows) > 1 else rows[0]["seconds"]
                else:
                    results[key] = (errors[0].strip().splitlines() or ["failed"])[-1]
    return results


def section_sample(args) -> dict:
    command = [sys.executable, "-m", "tfvae.export.benchmark", args.export_dir, "--json"]
    if args.edge_tfvae:
        command += ["--edge-tfvae", args.edge_tfvae]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output[output.index("{") :])  # one (indented) JSON object


SECTIONS = {
    "matmul": section_matmul,
    "train": section_train,
    "profile": section_profile,
    "strategies": section_strategies,
    "evaluate": section_evaluate,
    "sample": section_sample,
}


# --------------------------------------------------------------------------- driver


def _run_child(section: str, args, extra: list) -> dict:
    """Run one section in a fresh process; return its JSON result with its peak RSS added."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as out:
        path = out.name
    command = [sys.executable, "-m", "tfvae.bench", "--child", section, "--child-out", path, *extra]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL if not args.verbose else None)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        print(f"bench: {section} failed (exit {process.returncode}): {' '.join(command)}", file=sys.stderr)
        return {"error": f"exit {process.returncode}", "command": command}
    with open(path) as f:
        result = json.load(f)
    os.remove(path)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux reports KiB
    return result


def _table(results: dict) -> str:
    lines = ["| figure | value |", "| --- | --- |"]
    matmul = results.get("matmul", {})
    for key, value in matmul.items():
        lines.append(f"| matmul {key} | {value:.1f} |")
    for train in results.get("train", []):
        if "error" in train:
            continue
        floor = train["flops_per_epoch"] / (matmul.get("train_shapes_gflops", math.nan) * 1e9)
        lines.append(
            f"| train {train['variant']}: s/epoch, images/s, × floor ({floor:.2f} s), peak MB | "
            f"{train['seconds_per_epoch']:.2f}, {train['images_per_second']:.0f}, "
            f"{train['seconds_per_epoch'] / floor:.2f}, {train['peak_rss_mb']:.0f} |"
        )
    if "evaluate" in results:
        e = results["evaluate"]
        floor = e["flops"] / (matmul.get("eval_shapes_gflops", math.nan) * 1e9)
        lines.append(
            f"| evaluate K={e['importance_samples']} on {e['examples']} images: s, images/s, × floor ({floor:.1f} s), "
            f"peak MB | {e['seconds']:.1f}, {e['images_per_second']:.2f}, {e['seconds'] / floor:.2f}, {e['peak_rss_mb']:.0f} |"
        )
    for name, seconds in results.get("profile", {}).get("seconds_per_epoch", {}).items():
        lines.append(f"| profile: {name.replace('_', ' ')} (s/epoch) | {seconds:.3f} |")
    for name, value in results.get("strategies", {}).items():
        if name != "peak_rss_mb":
            lines.append(f"| strategy {name} (s/epoch) | {value if isinstance(value, str) else f'{value:.2f}'} |")
    if "sample" in results:
        lines.append(f"| sample (see export benchmark) | `{json.dumps(results['sample'])[:300]}` |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m tfvae.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("TFVAE_DATA_DIR"), help="local data (default $TFVAE_DATA_DIR)")
    parser.add_argument("--sections", default="matmul,train,evaluate", help="comma-separated: " + ",".join(SECTIONS))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="training variants: " + ",".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=4, help="training epochs per variant (the first is not timed)")
    parser.add_argument("--eval-images", type=int, default=10000, help="test images for the evaluate section")
    parser.add_argument("--importance-samples", type=int, default=5000, help="K for the evaluate section")
    parser.add_argument("--run-dir", help="a trained run for the evaluate section (default: an untrained model)")
    parser.add_argument("--export-dir", help="an export directory for the sample section")
    parser.add_argument("--edge-tfvae", help="the tfvae of a venv without TensorFlow, for the sample section")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per matmul measurement")
    parser.add_argument("--out", help="write the results here as JSON")
    parser.add_argument("--verbose", action="store_true", help="show the children's stderr")
    parser.add_argument("--child", choices=SECTIONS, help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="spe16", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # inside a child process: run one section, write its JSON
        result = SECTIONS[args.child](args)
        with open(args.child_out, "w") as f:
            json.dump(result, f)
        return result

    shared = ["--epochs", str(args.epochs), "--eval-images", str(args.eval_images),
              "--importance-samples", str(args.importance_samples), "--seconds", str(args.seconds)]
    for flag in ("data_dir", "run_dir", "export_dir", "edge_tfvae"):
        if getattr(args, flag):
            shared += ["--" + flag.replace("_", "-"), getattr(args, flag)]
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
               "date": time.strftime("%Y-%m-%d")}
    for section in args.sections.split(","):
        print(f"bench: {section} ...", file=sys.stderr, flush=True)
        if section == "train":
            results["train"] = [_run_child("train", args, shared + ["--variant", v]) for v in args.variants.split(",")]
        else:
            results[section] = _run_child(section, args, shared)
        if args.out:  # after every section, so a failure later loses nothing
            atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    results = {k: v for k, v in results.items() if not (isinstance(v, dict) and "error" in v)} | {
        "failed": [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    }
    print(_table(results))
    return results


if __name__ == "__main__":
    main()

"""The export's figures for BENCHMARKS.md: file sizes, quantization cost, decode latency, `tfvae sample` wall time.

    python -m tfvae.export.benchmark EXPORT_DIR [--edge-tfvae PATH] [--json]

- sizes and the quantization cost are read from EXPORT_DIR/manifest.json (`tfvae export --tflite --quantize ...`);
- decode latency, numpy in and numpy out, on one CPU thread: each TFLite decoder with the LiteRT interpreter
  (`num_threads=1`) and the SavedModel's `decode` signature (TensorFlow intra- and inter-op threads = 1); the
  median of many calls, per image (batch 1) and per 64-image grid (batch 64);
- the prior's share of a 64-image grid: drawing z from EXPORT_DIR/prior.npz (a learned mixture) against
  z ~ N(0, I), median of many draws, and loading prior.npz;
- with --edge-tfvae (the `tfvae` of a virtual environment without TensorFlow): the wall time of
  `tfvae sample --model EXPORT_DIR/decoder.tflite`, process start to PNG written, median of --runs runs.

TensorFlow is imported only for the SavedModel timing, after the TFLite timings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from tfvae.export import layout

__all__ = ["decode_latency", "prior_latency", "sample_wall_time", "main"]

GRID = 64  # images in one sample grid


def decode_latency(decode, latent_dim: int, batch: int, repeats: int, warmup: int = 20) -> float:
    """Median seconds of `decode(z)` for z of shape (batch, D), fresh z each call."""
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
    names = [layout.DECODER_FILE] + list(layout.QUANTIZED_DECODER_FILES.values())
    for name in names:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            decoder = TFLiteDecoder(path, num_threads=1)
            rows[name] = {b: decode_latency(decoder.decode, latent_dim, b, repeats) for b in (1, GRID)}
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
    return {b: decode_latency(decoder.decode, latent_dim, b, repeats) for b in (1, GRID)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir")
    parser.add_argument("--edge-tfvae", help="`tfvae` of an environment without TensorFlow, for the wall time")
    parser.add_argument("--runs", type=int, default=11, help="runs of `tfvae sample` (median)")
    parser.add_argument("--repeats", type=int, default=1000, help="decoder calls per latency (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    args = parser.parse_args(argv)

    with open(os.path.join(args.export_dir, layout.MANIFEST_FILE), encoding="utf-8") as f:
        manifest = json.load(f)
    latent_dim = manifest["latent_dim"]
    results = {
        "latent_dim": latent_dim,
        "files": {name: entry["bytes"] for name, entry in manifest["files"].items()},
        "parity": manifest["parity"],
        "quantization": manifest.get("quantization"),
        "latency_seconds": _tflite_latencies(args.export_dir, latent_dim, args.repeats),
        "prior_seconds": prior_latency(args.export_dir, latent_dim, args.repeats),
    }
    if args.edge_tfvae:  # before TensorFlow is loaded into this process
        times = sample_wall_time(args.edge_tfvae, os.path.join(args.export_dir, layout.DECODER_FILE), args.runs)
        results["sample_wall_seconds"] = {"median": statistics.median(times), "min": min(times), "max": max(times),
                                          "runs": len(times)}
    results["latency_seconds"][layout.SAVED_MODEL_DIR] = _saved_model_latency(args.export_dir, latent_dim, args.repeats)

    if args.json:
        print(json.dumps(results, indent=2))
        return results
    print("| file | bytes |\n| --- | ---: |")
    for name, size in results["files"].items():
        print(f"| `{name}` | {size:,} |")
    cost = results["quantization"]
    if cost:
        print(f"\nQuantization cost ({cost['subset']}):\n")
        print("| decoder | max abs diff in probs (64 z) | ELBO change | log p(x) change |\n| --- | ---: | ---: | ---: |")
        reference = cost["reference"]
        print(f"| Keras float32 (reference) | 0 | ELBO {reference['elbo']:.3f} | log p(x) {reference['log_likelihood']:.3f} |")
        for name, entry in cost["decoders"].items():
            print(f"| `{name}` | {results['parity'][name]['max_abs_diff_probs']:.2e} | "
                  f"{entry['elbo_change']:+.4f} | {entry['log_likelihood_change']:+.4f} |")
    print("\nDecode latency, one CPU thread, median (numpy in, numpy out):\n")
    print("| model | per image (batch 1) | per 64-image grid |\n| --- | ---: | ---: |")
    for name, by_batch in results["latency_seconds"].items():
        print(f"| `{name}` | {by_batch[1] * 1e6:,.1f} µs | {by_batch[GRID] * 1e6:,.1f} µs |")
    prior = results["prior_seconds"]
    if prior:
        print(f"\nz for a {GRID}-image grid, median: prior.npz ({prior['components']} components) "
              f"{prior['prior'] * 1e6:,.1f} µs, N(0, I) {prior['standard_normal'] * 1e6:,.1f} µs; "
              f"loading prior.npz {prior['load'] * 1e3:.2f} ms")
    if "sample_wall_seconds" in results:
        wall = results["sample_wall_seconds"]
        print(f"\n`tfvae sample` without TensorFlow, process start to PNG written: median {wall['median']:.3f} s "
              f"(min {wall['min']:.3f}, max {wall['max']:.3f}, {wall['runs']} runs)")
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

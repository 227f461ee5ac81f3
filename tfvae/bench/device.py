"""Export and on-device latency: the `sample` section, an export's figures.

File sizes and quantization cost (manifest.json), decode latency on one CPU thread (each TFLite decoder with
the LiteRT interpreter, the SavedModel's `decode` signature), the prior's share of a 64-image grid
(prior.npz), and with `edge_tfvae` the wall time of `tfvae sample` in an environment without TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

from tfvae.bench.options import at_least
from tfvae.errors import ConfigError
from tfvae.export import layout  # names only: no TensorFlow

__all__ = ["GRID", "SampleOptions", "section_sample", "decode_latency", "prior_latency", "sample_wall_time"]

GRID = 64  # images in one sample grid


@dataclasses.dataclass(frozen=True)
class SampleOptions:
    """sample: an export, and how many times each latency is measured."""

    export_dir: str  # an export written by `tfvae export`
    edge_tfvae: Optional[str] = None  # the `tfvae` of an environment without TensorFlow (None: no wall time)
    runs: int = 11  # runs of `tfvae sample` (median)
    repeats: int = 1000  # decoder calls per latency (median)

    def __post_init__(self):
        if not self.export_dir:
            raise ConfigError("the sample section needs --export-dir (an export written by `tfvae export`)")
        at_least(self, 1, "runs", "repeats")


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


def section_sample(options: SampleOptions) -> dict:
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

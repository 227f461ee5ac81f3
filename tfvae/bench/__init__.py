"""How close tfvae runs to this machine's limit: training, evaluation and sampling against FLOP floors.

    tfvae bench [--run-dir RUN | --preset NAME, model flags of tfvae train | --models classic,conv,...]
                [--sections matmul,conv,train,evaluate] [--json] [--out FILE]

The model measured is a run's (`--run-dir`: its config, and its weights for `evaluate`) or the one that the
model flags of `tfvae train` describe, untrained: it costs the same FLOPs. `--models` measures several members
of the model family (the presets, MODELS) in one run, each with every section, into one report. Each section
runs in its own process with its own options (`SECTIONS`: a function and a frozen dataclass).

One module per kind of measurement:
  kernels.py   matmul, conv: kernel throughput at the model's own product shapes, and the FLOP floors
  speed.py     train, evaluate, profile, strategies: training and evaluation speed
  device.py    sample: an export's sizes, quantization cost and on-device decode latency
  analyses.py  gaps, quality: a trained run's inference gaps and time to quality (tfvae.analysis)
  runner.py    the sections' table, a child process per section, the model family, the machine
  report.py    the markdown tables

Example (no TensorFlow in this process; each section imports it in its own):
>>> from tfvae.presets import expand_preset
>>> sections = options_for(["matmul"], config=expand_preset("classic"), seconds=0.5)
>>> report = run(expand_preset("classic"), sections)  # doctest: +SKIP
>>> print(table(report))  # doctest: +SKIP
"""

from tfvae.bench.device import GRID, decode_latency, prior_latency, sample_wall_time
from tfvae.bench.kernels import floor_seconds, measure_gflops, workloads
from tfvae.bench.report import models_table, table
from tfvae.bench.runner import DEFAULT_SECTIONS, MODELS, SECTIONS, machine, options_for, run, run_models
from tfvae.bench.speed import VARIANTS

__all__ = [
    "SECTIONS",
    "DEFAULT_SECTIONS",
    "VARIANTS",
    "MODELS",
    "GRID",
    "options_for",
    "run",
    "run_models",
    "table",
    "models_table",
    "machine",
    "workloads",
    "floor_seconds",
    "measure_gflops",
    "decode_latency",
    "prior_latency",
    "sample_wall_time",
]

"""Make a shipped model's folder from a trained run: `python -m tfvae.pretrained.build --run-dir RUN --name NAME`.

    1. the run's model (its best validation epoch with keep_best), weights rounded to float16: the stored model
    2. model.json and weights.npz (float16, compressed)
    3. decoder_int8.tflite and prior.npz, exported from the stored model (its int8 cost measured, paired, on
       `--measure-images` test images)
    4. the stored model's test figures: ELBO and log p(x) at K = `--importance-samples` over the whole test split
       (a conditional model: log p(x|y) and its own classification accuracy, each test image given its label)
    5. manifest.json: the command that trained the run, the commit, the run's config, the figures, each file's sha256

The folder is written beside its final place and published in one step (tfvae.io.atomic_directory).
Maintainers run this; users never need to (BENCHMARKS.md, "Pretrained models", has the commands).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time

import numpy as np

from tfvae import pretrained
from tfvae.io import atomic_directory, atomic_write_text, file_sha256

__all__ = ["build"]


def build(run_dir: str, name: str, command: str, commit: str, *, importance_samples: int = 5000,
          measure_images: int = 500, data_dir=None, log=print) -> dict:
    """Write tfvae/pretrained/NAME from the model of `run_dir`; return its manifest."""
    import tfvae
    from tfvae.datasets.splits import split_data
    from tfvae.runs import SUMMARY_FILE, load_vae

    if name not in pretrained.NAMES:
        raise SystemExit(f"--name must be one of {', '.join(pretrained.NAMES)} (add it to NAMES first)")
    config, vae = load_vae(run_dir)
    vae.set_weights([w.astype(np.float16).astype(np.float32) for w in vae.get_weights()])  # the stored model
    vae.run_config = config
    test, labels = split_data(config, "test", data_dir)  # labels: a conditional model's (else None)
    target = os.path.join(os.path.dirname(os.path.abspath(pretrained.__file__)), name)
    with atomic_directory(target) as staging:
        atomic_write_text(os.path.join(staging, pretrained.MODEL_CONFIG_FILE),
                          json.dumps(vae.get_config(), indent=2, sort_keys=True) + "\n")
        weights = {f"w{i}": w.astype(np.float16) for i, w in enumerate(vae.get_weights())}
        np.savez_compressed(os.path.join(staging, pretrained.WEIGHTS_FILE), **weights)
        with tempfile.TemporaryDirectory() as scratch:
            export = tfvae.export(vae, os.path.join(scratch, "export"), tflite=True, quantize=("int8",), images=test,
                                  labels=labels, eval_images=measure_images, log=log)
            for file in (pretrained.DECODER_FILE, pretrained.PRIOR_FILE):
                shutil.copy(os.path.join(scratch, "export", file), os.path.join(staging, file))
        log(f"evaluating the stored model on {len(test)} test images, K = {importance_samples}")
        evaluation = tfvae.evaluate(vae, test, importance_samples=importance_samples, seed=0, progress=True,
                                    labels=labels)
        with open(os.path.join(run_dir, SUMMARY_FILE), encoding="utf-8") as f:
            summary = json.load(f)
        stored_config = dataclasses.replace(config, data_dir=None)  # where the data was is the trainer's machine's
        manifest = {
            "name": name,
            "command": command,
            "commit": commit,
            "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "rebuild": f"{command} --run-dir runs/{name}; python -m tfvae.pretrained.build --run-dir runs/{name} "
                       f"--name {name} --command '{command}' --commit $(git rev-parse HEAD)",
            "config": stored_config.to_dict(),
            "storage": "weights stored as float16 (weights.npz) and loaded as float32: the stored model is the trained "
                       "one rounded to float16; every figure below is the stored model's",
            "test": {**{k: v for k, v in evaluation.to_dict().items() if k != "split"}, "split": "test",
                     "command": f"tfvae evaluate --pretrained {name}"},
            "run_summary": {k: summary[k] for k in ("epochs", "train_elbo", "val_elbo", "test_elbo") if k in summary},
            "decoder": {
                "file": pretrained.DECODER_FILE,
                "quantization": "int8 (dynamic range: int8 weights, float32 activations)",
                "parity": export["parity"][pretrained.DECODER_FILE],
                "cost": export["quantization"]["decoders"][pretrained.DECODER_FILE],
                "cost_measured_on": export["quantization"]["subset"],
            },
            "files": {},
        }
        if config.condition == "label":  # what `tfvae sample --pretrained NAME --label k` reads (classes_beside)
            manifest["condition"] = "label"
            manifest["classes"] = list(config.classes)
            manifest["test"]["command"] += " (log p(x|y), each test image given its label)"
        for file in sorted(os.listdir(staging)):
            path = os.path.join(staging, file)
            manifest["files"][file] = {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}
        atomic_write_text(os.path.join(staging, pretrained.MANIFEST_FILE), json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {target}: test log p(x) {evaluation.log_likelihood:.2f} ± {evaluation.log_likelihood_stderr:.2f}")
    return manifest


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a finished run of the command below")
    parser.add_argument("--name", required=True, choices=pretrained.NAMES)
    parser.add_argument("--command", required=True, help="the command that trained the run, seed included")
    parser.add_argument("--commit", required=True, help="the commit that trained the run")
    parser.add_argument("--importance-samples", type=int, default=5000)
    parser.add_argument("--measure-images", type=int, default=500)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    build(args.run_dir, args.name, args.command, args.commit, importance_samples=args.importance_samples,
          measure_images=args.measure_images, data_dir=args.data_dir)


if __name__ == "__main__":
    main()

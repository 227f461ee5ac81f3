"""`tfvae export`: options -> tfvae.export.exporter.export_run (--run-dir) or export_file (--model)."""

from __future__ import annotations

import click

from tfvae.cli.evaluate import PRETRAINED_OPTION, check_model_source, dataset_options, pretrained_source
from tfvae.export.layout import (  # no TensorFlow
    DEFAULT_EVAL_IMAGES,
    DEFAULT_IMPORTANCE_SAMPLES,
    QUANTIZATIONS,
    WEB_MODELS,
)


def _quantizations(ctx, param, value) -> tuple:
    """'none,float16,int8' -> ('float16', 'int8'); a name not in layout.QUANTIZATIONS is a usage error (exit 2)."""
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    unknown = [name for name in names if name != "none" and name not in QUANTIZATIONS]
    if unknown:
        raise click.BadParameter(f"{', '.join(map(repr, unknown))}: choose from none, {', '.join(QUANTIZATIONS)}")
    return tuple(q for q in QUANTIZATIONS if q in names)


@click.command()
@click.option("--run-dir", type=click.Path(file_okay=False), default=None, help="A run written by tfvae train.")
@click.option("--model", type=click.Path(), default=None,
              help="A .keras file written by vae.save(...), instead of --run-dir; --dataset measures the quantization "
                   "cost on its test images.")
@PRETRAINED_OPTION
@dataset_options
@click.option("--out", type=click.Path(), default=None,
              help="Where the export is written [default: RUN_DIR/export; needed with --model].")
@click.option("--tflite", is_flag=True, help="Also write decoder.tflite and encoder.tflite (builtin ops only).")
@click.option(
    "--quantize",
    default="none",
    show_default=True,
    callback=_quantizations,
    metavar="none,float16,int8,full_int8",
    help="Quantized decoders to write beside decoder.tflite (needs --tflite): decoder_float16.tflite, "
    "decoder_int8.tflite (dynamic-range int8 weights), decoder_full_int8.tflite (int8 weights and activations, "
    "batch 1, float32 in and out: for TFLM and NPUs).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing export (only once the new one is complete).")
@click.option("--web", is_flag=True,
              help="Also write OUT/web: a static page that samples from the decoder in the browser (LiteRT.js).")
@click.option("--web-model", type=click.Choice(WEB_MODELS), default=None,
              help="The decoder the page starts with (both are in OUT/web) [default: float32]; needs --web.")
@click.option("--micro", is_flag=True,
              help="Also write OUT/micro: decoder_full_int8.tflite as C for TFLite for Microcontrollers, with the "
              "arena it needs (measured; needs --quantize full_int8 and pip install \"tfvae[micro]\").")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    envvar="TFVAE_DATA_DIR",
    help="Test images for the quantization cost [env: TFVAE_DATA_DIR; default: the run's data].",
)
@click.option("--measure-images", "--eval-images", "eval_images", type=click.IntRange(min=0), default=DEFAULT_EVAL_IMAGES,
              show_default=True,
              help="The quantization cost (each quantized decoder's change in ELBO and log p(x), paired with the "
                   "Keras model, with its standard error) is measured on N test images drawn at random (fixed seed); "
                   "all of them if there are fewer; 0 skips it (faster; the manifest says so).")
@click.option("--importance-samples", type=int, default=DEFAULT_IMPORTANCE_SAMPLES, show_default=True,
              help="K, samples of z per image for the log-likelihood in the quantization cost.")
def export(run_dir, model, pretrained, dataset, image_key, image_size, channels, out, tflite, quantize, overwrite, web, web_model,
           micro, data_dir, eval_images, importance_samples):
    """Export a trained run's (or a saved model's) decoder and encoder as a SavedModel and, with --tflite, TFLite files.

    \b
    OUT/saved_model/          signatures decode (z -> probs, logits) and encode (x -> loc, scale)
    OUT/decoder.tflite        with --tflite; also encoder.tflite
    OUT/decoder_float16.tflite, OUT/decoder_int8.tflite   with --quantize
    OUT/decoder_full_int8.tflite   with --quantize full_int8 (runs under TFLM)
    OUT/micro/                with --micro: the full-int8 decoder as a C array, its arena, the C++ to run it
    OUT/web/                  with --web: the page; serve it with python -m http.server -d OUT/web
    OUT/manifest.json         shapes, sizes, sha256, parity with Keras, quantization cost

    A conditional run's (--condition label) decode and encode also take label (N,) int32;
    manifest.json lists its classes, and tfvae sample --label draws one of them.

    The export is built in a staging folder beside OUT and swapped into place in one
    step, so OUT always holds a whole export, the old one or the new one.
    Then: tfvae sample --model OUT/decoder.tflite
    """
    model, dataset = pretrained_source(pretrained, run_dir, model, dataset)
    check_model_source(run_dir, model, dataset, image_key, image_size, channels, dataset_needed=False)
    if model is not None and out is None:
        raise click.UsageError("--model needs --out, the export directory")
    from tfvae.export.exporter import export_file, export_run

    options = dict(tflite=tflite, quantize=quantize, overwrite=overwrite, web=web, web_model=web_model, micro=micro,
                   data_dir=data_dir, eval_images=eval_images, importance_samples=importance_samples,
                   log=lambda message: click.echo(message, err=True))
    if run_dir is not None:
        export_run(run_dir, out, **options)
    else:
        export_file(model, out, dataset=dataset, image_key=image_key, image_size=image_size,
                    channels=None if channels is None else int(channels), **options)

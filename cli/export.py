"""`tfvae export`: options -> tfvae.export.exporter.export_run."""

from __future__ import annotations

import click

from tfvae.export.layout import DEFAULT_EVAL_IMAGES, DEFAULT_IMPORTANCE_SAMPLES, WEB_MODELS  # no TensorFlow


@click.command()
@click.option("--run-dir", type=click.Path(file_okay=False), required=True, help="A run written by tfvae train.")
@click.option("--out", type=click.Path(), default=None, help="Where the export is written [default: RUN_DIR/export].")
@click.option("--tflite", is_flag=True, help="Also write decoder.tflite and encoder.tflite (builtin ops only).")
@click.option(
    "--quantize",
    default="none",
    show_default=True,
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
@click.option("--eval-images", type=int, default=DEFAULT_EVAL_IMAGES, show_default=True,
              help="The quantization cost is measured on N test images drawn at random (fixed seed).")
@click.option("--importance-samples", type=int, default=DEFAULT_IMPORTANCE_SAMPLES, show_default=True,
              help="K, samples of z per image for the log-likelihood in the quantization cost.")
def export(run_dir, out, tflite, quantize, overwrite, web, web_model, micro, data_dir, eval_images, importance_samples):
    """Export a trained run's decoder and encoder as a SavedModel and, with --tflite, TFLite files.

    \b
    OUT/saved_model/          signatures decode (z -> probs, logits) and encode (x -> loc, scale)
    OUT/decoder.tflite        with --tflite; also encoder.tflite
    OUT/decoder_float16.tflite, OUT/decoder_int8.tflite   with --quantize
    OUT/decoder_full_int8.tflite   with --quantize full_int8 (runs under TFLM)
    OUT/micro/                with --micro: the full-int8 decoder as a C array, its arena, the C++ to run it
    OUT/web/                  with --web: the page; serve it with python -m http.server -d OUT/web
    OUT/manifest.json         shapes, sizes, sha256, parity with Keras, quantization cost

    The export is built in a staging folder beside OUT and swapped into place in one
    step, so OUT always holds a whole export, the old one or the new one.
    Then: tfvae sample --model OUT/decoder.tflite
    """
    from tfvae.export.exporter import export_run

    export_run(
        run_dir,
        out,
        tflite=tflite,
        quantize=quantize,
        overwrite=overwrite,
        web=web,
        web_model=web_model,
        micro=micro,
        data_dir=data_dir,
        eval_images=eval_images,
        importance_samples=importance_samples,
        log=lambda message: click.echo(message, err=True),
    )

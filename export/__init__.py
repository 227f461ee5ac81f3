"""Taking the decoder to the edge: SavedModel and TFLite exports, and a sampler that needs no TensorFlow.

    tfvae.export(...)       the one function: a model (or a .keras file, or a run directory) -> an export directory
    tfvae.export.layout     names of the signatures, tensors and files of an export, and the export's defaults (no TensorFlow)
    tfvae.export.litert     TFLite encoder and decoder run by the LiteRT interpreter (numpy + ai-edge-litert)
    tfvae.export.sampler    ancestral sampling from any decoder, PNG and .npy output (no TensorFlow)
    tfvae.export.savedmodel the tensors-in, tensors-out tf.Module and SavedModel / Keras decoders (TensorFlow)
    tfvae.export.exporter   `export_model`, `export_run`, `export_file`: SavedModel, TFLite, quantized decoders and
                            manifest.json (TensorFlow)

This file imports nothing heavy: `import tfvae.export` and the on-device modules must never import
TensorFlow; `export` imports the exporter when it is called. An export's figures (sizes, quantization
cost, decode latency, `tfvae sample` wall time) are the `sample` section of
`tfvae bench --export-dir EXPORT_DIR` (tfvae.bench).
"""

from __future__ import annotations

from tfvae.callable_module import make_callable  # sys and types only

__all__ = ["export"]

_QUANTIZE = ("float16", "int8")  # export's default: the two quantized decoders LiteRT runs anywhere


def export(
    model_or_path,
    out: str,
    tflite: bool = True,
    quantize=_QUANTIZE,
    web: bool = False,
    images=None,
    overwrite: bool = False,
    *,
    labels=None,
    web_model: str | None = None,
    eval_images: int | None = None,
    importance_samples: int | None = None,
    data_dir: str | None = None,
    log=print,
) -> dict:
    """Write the export of a VAE, as `tfvae export` does: SavedModel, TFLite decoders, manifest.json; return the manifest.

    `tfvae.export(...)` calls this function. `tfvae sample --model OUT/decoder.tflite` then samples the
    export without TensorFlow.

    Args:
      model_or_path: a `tfvae.VAE`, a `.keras` file written by `vae.save`, or a run directory.
      out: the export directory (written all or nothing).
      tflite: also write decoder.tflite and encoder.tflite.
      quantize: quantized decoders to write beside decoder.tflite, a subset of `layout.QUANTIZATIONS`;
        () for none. The default is dropped with `tflite=False`.
      web: also write OUT/web, a page that samples the decoder in the browser.
      images: (N, H, W, C) images (binary for a Bernoulli model) on which the quantized decoders' change
        in ELBO and log p(x) is measured. None: a run directory's own test images; for a model, not
        measured (the manifest's "quantization" says `"measured": false`).
      overwrite: replace an existing export in `out`.
      labels: a conditional model's labels of `images` (N,) int: its quantization cost is in log p(x|y).
      web_model: the decoder the page starts with (`layout.WEB_MODELS`); needs `web`.
      eval_images: measure on this many of the images, drawn at random with a fixed seed; None: all of
        `images`, or `layout.DEFAULT_EVAL_IMAGES` of a run's test images.
      importance_samples: K for the quantization cost; None: `layout.DEFAULT_IMPORTANCE_SAMPLES`.
      data_dir: a run directory's data, if not where the run found it.
      log: where one-line progress messages go.

    Returns:
      The manifest (also OUT/manifest.json).

    Raises:
      TfvaeError: bad options, a path that is not a model, an existing export without `overwrite`.
      DataError: `images` that do not fit the model.

    Example:
    >>> import numpy as np, tfvae  # doctest: +SKIP
    >>> vae = tfvae.VAE(latent_dim=2, hidden_units=8)  # doctest: +SKIP
    >>> x = (np.random.default_rng(0).random((16, 28, 28)) < 0.3).astype("float32")  # doctest: +SKIP
    >>> manifest = tfvae.export(vae, "/tmp/vae-export", images=x, overwrite=True, log=None)  # doctest: +SKIP
    >>> sorted(manifest["quantization"]["decoders"])  # doctest: +SKIP
    ['decoder.tflite', 'decoder_float16.tflite', 'decoder_int8.tflite']
    """
    import os

    from tfvae.export import exporter, layout

    if quantize is _QUANTIZE and not tflite:
        quantize = ()
    log = log or (lambda message: None)
    options = dict(tflite=tflite, quantize=quantize, web=web, web_model=web_model, overwrite=overwrite,
                   importance_samples=layout.DEFAULT_IMPORTANCE_SAMPLES if importance_samples is None else importance_samples)
    source = None
    if isinstance(model_or_path, (str, os.PathLike)):
        source = os.fspath(model_or_path)
        if images is None and os.path.isdir(source):  # a run: the cost on its own test images
            return exporter.export_run(source, out, data_dir=data_dir, log=log,
                                       eval_images=layout.DEFAULT_EVAL_IMAGES if eval_images is None else eval_images,
                                       **options)
        from tfvae.saving import load_model

        vae = load_model(source)
    else:
        vae = model_or_path
    return exporter.export_model(vae, out, images=images, labels=labels, eval_images=eval_images, source=source,
                                 log=log, **options)


make_callable(__name__, "export")  # `tfvae.export(...)` calls `export`

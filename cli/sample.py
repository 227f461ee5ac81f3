"""`tfvae sample`: options -> tfvae.export.sampler. With a .tflite decoder it never imports TensorFlow."""

from __future__ import annotations

import click

from tfvae.pretrained import NAMES as PRETRAINED_NAMES  # names only: no TensorFlow


@click.command()
@click.option("--model", "model_path", type=click.Path(), default=None,
              help="A decoder.tflite, a SavedModel directory (OUT/saved_model) or a run directory.")
@click.option("--pretrained", type=click.Choice(PRETRAINED_NAMES), default=None,
              help="Instead of --model: a model shipped in the package (its int8 TFLite decoder and prior).")
@click.option("--n", type=int, default=64, show_default=True, help="How many images.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seeds z ~ p(z) and the Bernoulli draws: the same seed gives the same output.")
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="Scales the prior's scale (every component's): below 1 draws nearer the prior's modes.")
@click.option("--mode", type=click.Choice(["mean", "bernoulli"]), default="mean", show_default=True,
              help="mean: the decoder's means E[x|z] (Bernoulli or continuous Bernoulli); bernoulli: x ~ Bernoulli(p).")
@click.option("--out", type=click.Path(dir_okay=False), default="samples.png", show_default=True,
              help="The PNG grid.")
@click.option("--npy", type=click.Path(dir_okay=False), default=None,
              help="Also write the images as a (N, H, W, C) float32 .npy file.")
@click.option("--interpolate", is_flag=True, help="Decode N points on a straight line between two z ~ p(z).")
@click.option("--manifold", is_flag=True,
              help="2-D latent only: decode a sqrt(N) x sqrt(N) grid at the normal's percent-point function.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Interpreter threads for a .tflite decoder.")
@click.option("--runtime", type=click.Choice(["litert", "micro"]), default="litert", show_default=True,
              help="What runs a .tflite decoder: LiteRT, or TFLite for Microcontrollers' interpreter (a batch-1 "
              "decoder such as decoder_full_int8.tflite; pip install \"tfvae[micro]\").")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="Refuse a decoder that does not make images with this many channels (1 grey, 3 RGB).")
@click.option("--label", default=None, metavar="CLASS",
              help="A conditional decoder only: draw this class, an index or a class name from the export's "
              "manifest.json [default: one row per class]; --interpolate and --manifold draw it too.")
def sample(model_path, pretrained, n, seed, temperature, mode, out, npy, interpolate, manifold, threads, runtime,
           channels, label):
    """Draw images from a trained decoder: z ~ p(z), then p(x|z), written as a PNG grid.

    p(z) is the prior.npz beside the decoder (a learned mixture, written by
    `tfvae export`), or N(0, I) when there is none. A conditional decoder
    draws z ~ p(z|y) of each image's class y: --label 7 (or a class name)
    fills the grid with class 7; without --label, one row per class.

    With a .tflite decoder this needs only numpy, ai-edge-litert and Pillow:
    no TensorFlow. Images read row by row; white is x = 1; grey or RGB, of the
    model's image size.
    """
    from tfvae.errors import ConfigError
    from tfvae.export.sampler import LabelError, open_decoder, open_prior, resolve_label, sample as draw, write_samples

    if (model_path is None) == (pretrained is None):
        raise click.UsageError("give exactly one of --model PATH and --pretrained NAME")
    if pretrained is not None:
        from tfvae.pretrained import check_files, decoder_path

        check_files(pretrained)
        model_path = decoder_path(pretrained)
    if interpolate and manifold:
        raise ConfigError("--interpolate and --manifold are exclusive: choose one")
    latents = "interpolate" if interpolate else "manifold" if manifold else "prior"
    if n < 1:
        raise ConfigError(f"--n must be a positive integer, got {n}")
    if not 0 < temperature < float("inf"):  # before any file is read
        raise ConfigError(f"--temperature must be a positive number, got {temperature!r}")
    decoder = open_decoder(model_path, num_threads=threads, runtime=runtime)
    try:  # a label the decoder cannot take is a usage error: one line, exit 2
        index = resolve_label(label, decoder)
        prior = open_prior(model_path, decoder)
        samples = draw(decoder, n, seed=seed, mode=mode, latents=latents, prior=prior, temperature=temperature,
                       channels=channels and int(channels), label=index)
    except LabelError as e:
        raise click.UsageError(str(e)) from None
    write_samples(samples, out, npy_path=npy)
    click.echo(f"wrote {out}" + (f" and {npy}" if npy else "") +
               f": {len(samples.images)} images ({mode}, {latents} z, seed {seed}{_drawn_from(samples, decoder, prior, temperature)})")


def _drawn_from(samples, decoder, prior, temperature) -> str:
    """What the summary line adds about the classes, the prior and the temperature, e.g. ", class 7 (seven)"."""
    classes = getattr(decoder, "classes", None)
    text = ""
    if samples.labels is not None and len(set(samples.labels.tolist())) == 1:
        index = int(samples.labels[0])
        name = classes[index] if index < len(classes) else str(index)
        text = f", class {index}" + (f" ({name})" if name != str(index) else "")
    elif samples.labels is not None:
        text = f", one row per class ({len(classes)} rows of {samples.columns})"
    if prior.class_conditional:
        text += ", z ~ p(z|y): the prior's component of each class"
    elif not prior.is_standard_normal:
        text += f", p(z) a {prior.components}-component mixture"
    return text + ("" if temperature == 1 else f", temperature {temperature:g}")

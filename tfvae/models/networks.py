"""Encoders and decoders: tensors in, tensors out. They are what gets exported, so no distribution lives here.

    encoder: x (B, H, W, C) -> params (B, 2D), the loc and raw scale of q(z|x); a Sequential whose last
             layer is the Dense map from h, its last hidden features (an IAF's context, `--flow-context features`)
    decoder: z (B, D)       -> logits (B, H * W * C), one Bernoulli logit per pixel

Every shape is derived from `image_shape`; nothing assumes 28 x 28 x 1. The
last layer of each network is float32 even under mixed precision: its outputs
are distribution parameters.

Conditional networks (`classes` N > 0, a conditional VAE, Sohn et al. 2015) take the label as a one-hot
vector y (B, N) that the VAE makes in the graph (`conditioned_input`):

    mlp encoder:  [flatten(x), y]             (B, H * W * C + N)
    conv encoder: x with y broadcast as N extra channels of every pixel (B, H, W, C + N)
    decoder:      [z, y]                      (B, D + N)
"""

from __future__ import annotations

import math

import numpy as np
import tf_keras as tfk

__all__ = ["mlp_encoder", "mlp_decoder", "conv_encoder", "conv_decoder", "conv_grid", "set_output_bias",
           "conditioned_input"]

# Stride-2 convolutions in the conv encoder (and transposed ones in its decoder): 28 -> 14 -> 7.
CONV_LEVELS = 2
KERNEL_SIZE = 3


def conditioned_input(inputs, one_hot):
    """A conditional network's input: `inputs` (B, F) or images (B, H, W, C) with the one-hot labels (B, N),
    concatenated (B, F + N), or broadcast as N extra channels (B, H, W, C + N). Builtin TFLite ops only."""
    import tensorflow as tf

    one_hot = tf.cast(one_hot, inputs.dtype)
    if inputs.shape.rank == 2:
        return tf.concat([inputs, one_hot], axis=-1)
    shape = tf.shape(inputs)
    channels = tf.broadcast_to(one_hot[:, None, None, :], tf.stack([shape[0], shape[1], shape[2], one_hot.shape[-1]]))
    return tf.concat([inputs, channels], axis=-1)


def mlp_encoder(latent_dim: int, image_shape, *, hidden_units: int, hidden_layers: int = 1, classes: int = 0,
                **_) -> tfk.Model:
    """x (B, H, W, C) -> params (B, 2D): `hidden_layers` ReLU layers of `hidden_units`, then loc and raw scale.

    Conditional (`classes` N > 0): the input is [flatten(x), one-hot y], (B, H * W * C + N).
    """
    return tfk.Sequential(
        [
            *([tfk.layers.InputLayer(image_shape), tfk.layers.Flatten()] if not classes
              else [tfk.layers.InputLayer((math.prod(image_shape) + classes,))]),
            *[tfk.layers.Dense(hidden_units, activation="relu") for _ in range(hidden_layers)],
            tfk.layers.Dense(2 * latent_dim, dtype="float32"),
        ],
        name="encoder",
    )


def mlp_decoder(latent_dim: int, image_shape, *, hidden_units: int, hidden_layers: int = 1, classes: int = 0,
                **_) -> tfk.Model:
    """z (B, D) -> logits (B, H * W * C): `hidden_layers` ReLU layers, then a logit per pixel.

    Conditional (`classes` N > 0): the input is [z, one-hot y], (B, D + N).
    """
    return tfk.Sequential(
        [
            tfk.layers.InputLayer((latent_dim + classes,)),
            *[tfk.layers.Dense(hidden_units, activation="relu") for _ in range(hidden_layers)],
            tfk.layers.Dense(math.prod(image_shape), dtype="float32"),
        ],
        name="decoder",
    )


def conv_grid(image_shape) -> tuple:
    """(h, w) of the coarsest feature map: each stride-2 'same' convolution maps n to ceil(n / 2)."""
    height, width = image_shape[:2]
    for _ in range(CONV_LEVELS):
        height, width = math.ceil(height / 2), math.ceil(width / 2)
    return height, width


def conv_encoder(latent_dim: int, image_shape, *, hidden_units: int, filters: int = 32, hidden_layers: int = 1,
                 classes: int = 0, **_):
    """x (B, H, W, C) -> params (B, 2D).

    Stride-2 3x3 convolutions with `filters`, 2 `filters`, ... channels halve
    the grid at each level (28 -> 14 -> 7), then `hidden_layers` dense ReLU
    layers and the posterior's parameters. Conditional (`classes` N > 0): the
    one-hot label is N more input channels, the same at every pixel, (B, H, W, C + N).
    """
    height, width, channels = image_shape
    layers = [tfk.layers.InputLayer((height, width, channels + classes))]
    for level in range(CONV_LEVELS):
        layers.append(tfk.layers.Conv2D(filters * 2**level, KERNEL_SIZE, strides=2, padding="same", activation="relu"))
    layers.append(tfk.layers.Flatten())
    layers += [tfk.layers.Dense(hidden_units, activation="relu") for _ in range(hidden_layers)]
    layers.append(tfk.layers.Dense(2 * latent_dim, dtype="float32"))
    return tfk.Sequential(layers, name="encoder")


def conv_decoder(latent_dim: int, image_shape, *, hidden_units: int, filters: int = 32, hidden_layers: int = 1,
                 classes: int = 0, **_):
    """z (B, D) -> logits (B, H * W * C), the encoder mirrored.

    Dense ReLU layers, a (h, w, 2^(L-1) filters) feature map at the encoder's
    coarsest grid, stride-2 3x3 transposed convolutions up to (2^L h, 2^L w),
    the last one to C channels of logits, then a crop to (H, W) for sizes that
    are not multiples of 2^L (27 -> 14 -> 7 -> 28, cropped to 27). Transposed
    convolutions, crops and reshapes convert to TFLite builtin ops. Conditional
    (`classes` N > 0): the input is [z, one-hot y], (B, D + N).
    """
    height, width, channels = image_shape
    grid_height, grid_width = conv_grid(image_shape)
    top_filters = filters * 2 ** (CONV_LEVELS - 1)
    layers = [tfk.layers.InputLayer((latent_dim + classes,))]
    layers += [tfk.layers.Dense(hidden_units, activation="relu") for _ in range(hidden_layers)]
    layers += [
        tfk.layers.Dense(grid_height * grid_width * top_filters, activation="relu"),
        tfk.layers.Reshape((grid_height, grid_width, top_filters)),  # (B, h, w, F)
    ]
    for level in reversed(range(CONV_LEVELS - 1)):
        layers.append(
            tfk.layers.Conv2DTranspose(filters * 2**level, KERNEL_SIZE, strides=2, padding="same", activation="relu")
        )
    layers.append(tfk.layers.Conv2DTranspose(channels, KERNEL_SIZE, strides=2, padding="same", dtype="float32"))
    extra_height, extra_width = grid_height * 2**CONV_LEVELS - height, grid_width * 2**CONV_LEVELS - width
    if extra_height or extra_width:  # (B, 2^L h, 2^L w, C) -> (B, H, W, C)
        layers.append(tfk.layers.Cropping2D(((0, extra_height), (0, extra_width)), dtype="float32"))
    layers.append(tfk.layers.Flatten(dtype="float32"))  # (B, H * W * C), like the MLP's
    return tfk.Sequential(layers, name="decoder")


def set_output_bias(decoder: tfk.Model, pixel_means: np.ndarray, eps: float = 1e-3) -> None:
    """Set the decoder's last bias to the logit of `pixel_means` (H, W, C), so that p(x|z) starts at the data's
    average image, the Bernoulli maximum-likelihood fit of a decoder that ignores z.

    Whatever the architecture: the bias of the last layer that has one is per pixel (B, H * W * C) for a dense
    output, per channel (C,) for a convolution's (then each channel's mean over the image). Means are clipped
    to [eps, 1 - eps]: pixels that are never on get logit -6.9, not -inf.
    """
    decoder = getattr(decoder, "body", decoder)  # a two-layer model's TopDownDecoder: the logits are its body's
    layer = next(layer for layer in reversed(decoder.layers) if getattr(layer, "bias", None) is not None)
    means = np.asarray(pixel_means, np.float64)
    size = int(np.prod(layer.bias.shape))
    if size == means.size:
        means = means.reshape(-1)
    elif size == means.shape[-1]:
        means = means.reshape(-1, size).mean(axis=0)
    else:
        raise ValueError(f"the decoder's last bias has {size} entries, neither one per pixel nor one per channel")
    means = np.clip(means, eps, 1 - eps)
    layer.bias.assign(np.log(means / (1 - means)).reshape(layer.bias.shape).astype(layer.bias.dtype.as_numpy_dtype))

"""Your own Keras networks in a tfvae VAE: a convolutional encoder and decoder, trained, saved and reloaded.

    python own_networks.py --out out          # binarized MNIST (TFVAE_DATA_DIR, else a download)
    python own_networks.py --tiny --out /tmp/tiny   # seconds: 512 images, one epoch, small networks

tfvae supplies the distributions (q(z|x), p(z), p(x|z)), the objective, saving and export; you supply
two tf_keras models:

    encoder: images (B, H, W, C) -> (B, 2·D): loc, then the raw scale (scale = softplus(raw) + 1e-5)
    decoder: z (B, D) -> logits (B, H, W, C) of a Bernoulli image

Writes OUT/own.keras, OUT/builtin.keras, OUT/comparison.json (the two models' held-out ELBO and
log p(x)) and OUT/own_samples.png. `TFVAE_EXAMPLE_TINY=1` is `--tiny`.
"""

import argparse
import json
import os

import numpy as np
import tf_keras as tfk

import tfvae
from tfvae.export.sampler import write_png


def conv_encoder(image_shape, latent_dim, filters):
    """(B, H, W, C) -> (B, 2·D). H and W divisible by 4."""
    return tfk.Sequential([
        tfk.layers.InputLayer(input_shape=image_shape),
        tfk.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu"),  # (B, H/2, W/2, F)
        tfk.layers.Conv2D(2 * filters, 3, strides=2, padding="same", activation="relu"),  # (B, H/4, W/4, 2F)
        tfk.layers.Flatten(),
        tfk.layers.Dense(2 * latent_dim),  # loc (D), raw scale (D)
    ], name="encoder")


def conv_decoder(image_shape, latent_dim, filters):
    """(B, D) -> logits (B, H, W, C), the mirror of `conv_encoder`."""
    height, width, channels = image_shape
    return tfk.Sequential([
        tfk.layers.InputLayer(input_shape=(latent_dim,)),
        tfk.layers.Dense((height // 4) * (width // 4) * 2 * filters, activation="relu"),
        tfk.layers.Reshape((height // 4, width // 4, 2 * filters)),
        tfk.layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu"),  # (B, H/2, W/2, F)
        tfk.layers.Conv2DTranspose(channels, 3, strides=2, padding="same"),  # (B, H, W, C) logits, no activation
    ], name="decoder")


def fit(vae, x_train, x_valid, epochs, tiny):
    vae.compile()  # Adam, 1e-3
    vae.fit(x_train, epochs=epochs, batch_size=64 if tiny else 128, validation_data=x_valid, verbose=0 if tiny else 2)
    return vae


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out", help="where the models, the comparison and the samples go")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", default=os.environ.get("TFVAE_EXAMPLE_TINY") == "1",
                        help="tiny sizes, to check the script in seconds")
    args = parser.parse_args()
    tiny = args.tiny
    os.makedirs(args.out, exist_ok=True)
    epochs = args.epochs or (1 if tiny else 20)
    latent_dim, filters = (2, 4) if tiny else (20, 32)

    x_train = tfvae.load_images("binarized_mnist", limit=512 if tiny else None)  # (N, 28, 28, 1)
    x_valid = tfvae.load_images("binarized_mnist", "validation", limit=64 if tiny else None)
    image_shape = x_train.shape[1:]

    # Your networks, wrapped: tfvae adds q(z|x), p(z) = N(0, I), p(x|z) and the ELBO around them.
    own = tfvae.VAE(encoder=conv_encoder(image_shape, latent_dim, filters),
                    decoder=conv_decoder(image_shape, latent_dim, filters),
                    latent_dim=latent_dim, image_shape=image_shape)
    fit(own, x_train, x_valid, epochs, tiny)

    # Saved and reloaded like a built-in model: no custom_objects, the same outputs bit for bit.
    path = os.path.join(args.out, "own.keras")
    own.save(path)
    reloaded = tfk.models.load_model(path)
    z = np.random.default_rng(0).standard_normal((8, latent_dim)).astype(np.float32)
    assert np.array_equal(own.decode(z).mean().numpy(), reloaded.decode(z).mean().numpy())
    assert np.array_equal(own.sample(8, seed=0), reloaded.sample(8, seed=0))

    # Compared with tfvae's built-in MLP of the same latent size, on the same data and epochs.
    builtin = fit(tfvae.VAE(latent_dim=latent_dim, hidden_units=16 if tiny else 500, image_shape=image_shape),
                  x_train, x_valid, epochs, tiny)
    builtin.save(os.path.join(args.out, "builtin.keras"))
    images, k = (x_valid[:20], 20) if tiny else (x_valid[:1000], 1000)
    comparison = {}
    for name, vae in (("own", reloaded), ("builtin", builtin)):
        result = tfvae.evaluate(vae, images, importance_samples=k)
        comparison[name] = {"parameters": vae.count_params(), "elbo": result.elbo,
                            "log_likelihood": result.log_likelihood, "log_likelihood_stderr": result.log_likelihood_stderr}
        print(f"{name:8s} {vae.count_params():>9,} parameters   ELBO {result.elbo:8.2f}   "
              f"log p(x) {result.log_likelihood:8.2f} ± {result.log_likelihood_stderr:.2f} nats (K = {k})")
    with open(os.path.join(args.out, "comparison.json"), "w") as f:
        json.dump(comparison, f, indent=2)

    write_png(reloaded.sample(16, seed=0), os.path.join(args.out, "own_samples.png"))
    print(f"wrote {path}, comparison.json and own_samples.png to {args.out}")


if __name__ == "__main__":
    main()

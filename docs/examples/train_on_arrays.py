"""Train a VAE on a NumPy array, save it, reload it, evaluate it, and sample its TFLite decoder.

    python train_on_arrays.py --out out                  # binarized MNIST (TFVAE_DATA_DIR, else a download)
    python train_on_arrays.py --npz my_images.npz --out out  # your array: x (N, H, W[, C]), uint8 or [0, 1]
    python train_on_arrays.py --tiny --out /tmp/tiny     # seconds: 512 images, one epoch, a tiny model

Writes OUT/model.keras, OUT/evaluation.json, OUT/export/ (decoder.tflite, decoder_int8.tflite,
manifest.json, ...) and OUT/samples.png, drawn from decoder.tflite as `tfvae sample` draws them:
numpy and the LiteRT interpreter, no TensorFlow. `TFVAE_EXAMPLE_TINY=1` is `--tiny`.
"""

import argparse
import json
import os

import numpy as np
import tf_keras as tfk

import tfvae
from tfvae.export.sampler import open_decoder, open_prior, sample, write_samples


def load_array(npz_path, limit):
    """Images (N, H, W) or (N, H, W, C) as float32 in [0, 1]: your own array, or binarized MNIST."""
    if npz_path is None:
        return tfvae.load_images("binarized_mnist", limit=limit)  # (N, 28, 28, 1) in {0, 1}
    with np.load(npz_path, allow_pickle=False) as arrays:
        x = arrays["x"] if "x" in arrays else arrays[arrays.files[0]]
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)  # grey levels in [0, 1]
    return x[:limit]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="out", help="where the model, the export and the samples go")
    parser.add_argument("--npz", default=None, help="a .npz file whose array `x` (or first array) holds the images")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", default=os.environ.get("TFVAE_EXAMPLE_TINY") == "1",
                        help="tiny sizes, to check the script in seconds")
    args = parser.parse_args()
    tiny = args.tiny
    os.makedirs(args.out, exist_ok=True)

    # The data: any float array in [0, 1]; 10% held out for validation and evaluation.
    x = load_array(args.npz, limit=512 if tiny else None)
    x = x[..., None] if x.ndim == 3 else x  # (N, H, W, C)
    rng = np.random.default_rng(0)
    x = x[rng.permutation(len(x))]
    held_out = max(len(x) // 10, 1)
    x_train, x_valid = x[held_out:], x[:held_out]

    # The model: the options of `tfvae train`, here a small MLP. A Bernoulli model binarizes grey levels itself.
    vae = tfvae.VAE(latent_dim=2 if tiny else 20, hidden_units=16 if tiny else 500, image_shape=x.shape[1:])
    vae.compile()  # Adam, 1e-3
    history = vae.fit(
        x_train,
        epochs=args.epochs or (1 if tiny else 30),
        batch_size=64 if tiny else 128,
        validation_data=x_valid,
        callbacks=[tfk.callbacks.EarlyStopping(monitor="val_elbo", mode="max", patience=3, restore_best_weights=True)],
        verbose=0 if tiny else 2,
    )
    print(f"validation ELBO {history.history['val_elbo'][-1]:.2f} nats after {len(history.history['elbo'])} epochs")

    # Save, reload: the same model, the same samples.
    model_path = os.path.join(args.out, "model.keras")
    vae.save(model_path)
    reloaded = tfvae.load_model(model_path)
    assert np.array_equal(vae.sample(8, seed=0), reloaded.sample(8, seed=0))

    # log p(x) by importance sampling (tfvae evaluate uses K = 5000 over the whole test split). A Bernoulli
    # model scores binary images: grey held-out images are binarized once, with a fixed seed.
    images = (rng.random(x_valid.shape) < x_valid).astype(np.float32)[: 20 if tiny else 1000]
    result = tfvae.evaluate(reloaded, images, importance_samples=20 if tiny else 1000)
    with open(os.path.join(args.out, "evaluation.json"), "w") as f:
        json.dump(result.to_dict(), f, indent=2)
    print(f"log p(x) {result.log_likelihood:.2f} ± {result.log_likelihood_stderr:.2f} nats (ELBO {result.elbo:.2f})")

    # The edge: TFLite decoders (float32 and int8), the int8 cost measured on held-out images.
    export_dir = os.path.join(args.out, "export")
    manifest = tfvae.export(reloaded, export_dir, quantize=("int8",), images=images[:500], overwrite=True)
    int8 = manifest["quantization"]["decoders"]["decoder_int8.tflite"]
    print(f"exported {', '.join(sorted(os.listdir(export_dir)))} to {export_dir}; "
          f"the int8 decoder changes log p(x) by {int8['log_likelihood_change']:+.4f} nats")

    # What `tfvae sample --model OUT/export/decoder.tflite` does, without TensorFlow.
    decoder_path = os.path.join(export_dir, "decoder.tflite")
    decoder = open_decoder(decoder_path)
    samples = sample(decoder, 16 if tiny else 64, seed=0, prior=open_prior(decoder_path, decoder))
    write_samples(samples, os.path.join(args.out, "samples.png"))
    # vae.sample draws the same z from the same seed: the TFLite images match the Keras model's.
    difference = np.abs(samples.images - reloaded.sample(len(samples.images), seed=0)).max()
    print(f"TFLite samples against vae.sample(seed=0): largest difference {difference:.1e}")
    print(f"wrote {os.path.join(args.out, 'samples.png')}; the same from a shell: "
          f"tfvae sample --model {decoder_path} --out samples.png")


if __name__ == "__main__":
    main()

"""tfvae: a variational autoencoder on binarized MNIST, from `tfvae train` to an on-device decoder.

`cli/` and `export/` install inside the tfvae namespace (tfvae.cli, tfvae.export),
so installing tfvae never claims the global module names `cli` or `export`.
"""

from setuptools import setup

# The training stack, pinned to what is known to work together (Python 3.11).
TRAIN_REQUIRES = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "tensorflow-probability==0.25.0",
    "tensorflow-datasets==4.9.10",
    "importlib_resources",  # tensorflow-datasets needs it to download, but does not declare it
    "tensorboard==2.21.0",
    "matplotlib>=3.7",
    "tqdm>=4.60",  # the progress bar of `tfvae evaluate` (tfvae/evaluate.py)
]
# What `tfvae sample` needs with a .tflite decoder: no TensorFlow (see requirements-edge.txt).
EDGE_REQUIRES = [
    "numpy>=1.24",
    "click>=8.1",
    "pillow>=9.0",
    "ai-edge-litert==2.3.0",
]
# TFLite for Microcontrollers' Python interpreter (tfvae.export.micro). PyPI has only its nightly builds, so the
# specifier names one: pip then takes that build or a newer one.
MICRO_REQUIRES = ["tflite-micro>=0.dev20261023182759"]

setup(
    name="tfvae",
    version="0.1.0",
    description="A variational autoencoder for binarized MNIST with TensorFlow Probability layers, exported to LiteRT.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["tfvae", "tfvae.analysis", "tfvae.bench", "tfvae.datasets", "tfvae.models", "tfvae.cli", "tfvae.export",
              "tfvae.pretrained"],
    package_dir={"tfvae": "tfvae", "tfvae.cli": "cli", "tfvae.export": "export"},
    # The web page of `tfvae export --web` and the LiteRT.js runtime vendored for it (tfvae.export.litertjs).
    package_data={"tfvae.export": ["web_assets/*", "web_assets/third_party/litertjs/*",
                                   "web_assets/third_party/litertjs/*/*"],
                  # The shipped models (tfvae.pretrained): decoder_int8.tflite, prior.npz, model.json, weights.npz.
                  "tfvae.pretrained": ["*/*"]},
    install_requires=EDGE_REQUIRES + TRAIN_REQUIRES,
    extras_require={
        # selenium drives Debian's chromium (apt-get install chromium chromium-driver) in tests/test_web.py.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100", "scipy>=1.11", "selenium>=4.20"] + MICRO_REQUIRES,
        # `tfvae sample --runtime micro` and `tfvae export --micro`: the TFLite for Microcontrollers interpreter.
        "micro": MICRO_REQUIRES,
    },
    entry_points={"console_scripts": ["tfvae = tfvae.cli.main:main"]},
)

"""Figures users look at: ELBO curves, sample grids, reconstructions and the 2-D latent manifold.

Everything here takes NumPy arrays and writes a PNG atomically; no model code.
"""

from __future__ import annotations

import math

import numpy as np

from tfvae.io import atomic_path

__all__ = ["plot_elbo", "save_image_grid", "plot_reconstructions", "manifold_latents"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    plt = _pyplot()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def plot_elbo(rows: list, path: str) -> None:
    """Training and validation ELBO (nats per image) against the epoch, from history rows."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [r["train_elbo"] for r in rows], "o-", label="train")
    ax.plot(epochs, [r["val_elbo"] for r in rows], "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ELBO (nats per image)")
    ax.set_title("ELBO per epoch (higher is better)")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def tile(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """(N, H, W[, 1]) grey or (N, H, W, 3) RGB in [0, 1] -> one (rows*H, columns*W[, 3]) image; empty cells are white."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]  # (N, H, W) grey
    n, h, w = images.shape[:3]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.ones((rows * h, columns * w, *images.shape[3:]), dtype=np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * h : (r + 1) * h, c * w : (c + 1) * w] = image
    return canvas


def save_image_grid(images: np.ndarray, path: str, title: str = "", columns: int | None = None) -> None:
    """A titled grid of (N, H, W[, 1]) grey or (N, H, W, 3) RGB images with values in [0, 1] (white = 1)."""
    plt = _pyplot()
    canvas = tile(images, columns)
    fig, ax = plt.subplots(figsize=(6, 6 * canvas.shape[0] / canvas.shape[1]))
    ax.imshow(np.clip(canvas, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    _save(fig, path)


def plot_reconstructions(x: np.ndarray, x_mean: np.ndarray, path: str) -> None:
    """Originals (top row) over their reconstructions, the decoder means (bottom row)."""
    n = len(x)
    pairs = np.concatenate([np.asarray(x, np.float32), np.asarray(x_mean, np.float32)], axis=0)
    save_image_grid(pairs, path, title="validation images (top) and reconstructions (bottom)", columns=n)


def manifold_latents(n: int = 20, eps: float = 0.05) -> np.ndarray:
    """z on an n x n grid at the normal inverse CDF of evenly spaced probabilities (Kingma & Welling, Fig. 4b).

    Returns (n*n, 2) float32, rows from high z2 to low z2 so the picture reads like a plot.

    Example:
    >>> manifold_latents(3).shape
    (9, 2)
    """
    from statistics import NormalDist

    probabilities = np.linspace(eps, 1.0 - eps, n)
    values = np.array([NormalDist().inv_cdf(p) for p in probabilities], dtype=np.float32)
    z1, z2 = np.meshgrid(values, values[::-1])
    return np.stack([z1.ravel(), z2.ravel()], axis=-1).astype(np.float32)

"""scikit-learn's digits (1,797 grey 8×8 images, 10 classes, shipped inside the scikit-learn wheel) as an offline image
set for σ-VAE / LatentLM, and a judge for generated digits.

The judge is the protocol of the LatentLM notes' CPU prototype: a small MLP classifier (one hidden layer of 128 ReLU
units) trained on the real training images gives
- the conditional accuracy of generated images (the share classified as the class asked for),
- a Fréchet distance between generated and real training images in its 128-d hidden feature space (an FID for
  digits: the real test images score about 27, per-class mean images about 323),
- the mean distance of each generated image to its nearest training image (memorisation check: copies score ≈ 0).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass
class DigitsSplit:
    images: np.ndarray  # [N, 1, 8, 8] float32 in [-1, 1]
    labels: np.ndarray  # [N] int64


def load_digits_images(num_train: int = 1500, seed: int = 0) -> tuple[DigitsSplit, DigitsSplit]:
    """(train, test): a fixed permutation of the 1,797 images, the first `num_train` for training; pixels 0..16 are
    mapped to [-1, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    if not 0 < num_train < len(digits.target):
        raise ValueError(f"num_train={num_train} must be in (0, {len(digits.target)})")
    order = np.random.default_rng(seed).permutation(len(digits.target))
    images = (digits.images[order].astype(np.float32) / 8.0 - 1.0)[:, None]
    labels = digits.target[order].astype(np.int64)
    return DigitsSplit(images[:num_train], labels[:num_train]), DigitsSplit(images[num_train:], labels[num_train:])


def psnr(reconstruction: np.ndarray, images: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for pixels in [-1, 1] (peak-to-peak 2)."""
    mse = float(np.mean((np.asarray(reconstruction, np.float64) - np.asarray(images, np.float64)) ** 2))
    return float(10 * np.log10(4.0 / mse)) if mse > 0 else float("inf")


class DigitsJudge:
    """The classifier-based metrics for generated digits (see the module docstring), fitted on real training images."""

    def __init__(self, train: DigitsSplit, seed: int = 0):
        from sklearn.neural_network import MLPClassifier

        self.train = train.images.reshape(len(train.images), -1).astype(np.float64)
        self.classifier = MLPClassifier(hidden_layer_sizes=(128,), max_iter=500, random_state=seed)
        self.classifier.fit(self.train, train.labels)
        self._real_stats = self._stats(self.features(self.train))

    @staticmethod
    def _flat(images) -> np.ndarray:
        array = np.asarray(images, np.float64)
        return array.reshape(len(array), -1)

    def features(self, images) -> np.ndarray:
        """The classifier's hidden ReLU activations [N, 128]."""
        x = self._flat(images)
        return np.maximum(x @ self.classifier.coefs_[0] + self.classifier.intercepts_[0], 0.0)

    def accuracy(self, images, labels) -> float:
        return float(np.mean(self.classifier.predict(self._flat(images)) == np.asarray(labels)))

    @staticmethod
    def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return features.mean(0), np.cov(features, rowvar=False)

    def frechet_distance(self, images) -> float:
        """‖μ_g − μ_r‖² + tr(Σ_g + Σ_r − 2 (Σ_g Σ_r)^½) in the classifier's feature space, against the training set."""
        from scipy import linalg

        mu_g, cov_g = self._stats(self.features(images))
        mu_r, cov_r = self._real_stats
        with warnings.catch_warnings():  # units that never fire make a covariance singular; its root still exists
            warnings.simplefilter("ignore")
            root, _ = linalg.sqrtm(cov_g @ cov_r, disp=False)
        root = root.real
        return float(np.sum((mu_g - mu_r) ** 2) + np.trace(cov_g + cov_r - 2 * root))

    def nearest_neighbour_distance(self, images) -> float:
        """Mean L2 distance of each image to its nearest training image."""
        x = self._flat(images)
        d2 = (x**2).sum(1)[:, None] + (self.train**2).sum(1)[None] - 2 * x @ self.train.T
        return float(np.sqrt(np.maximum(d2.min(1), 0)).mean())


def image_grid(images, rows: int, cols: int, scale: int = 4):
    """A PIL image of `rows` × `cols` grey images [N, 1, H, W] in [-1, 1] (row-major), each scaled up `scale` times."""
    from PIL import Image

    array = np.clip((np.asarray(images, np.float32)[:, 0] + 1) / 2, 0, 1)
    n, h, w = array.shape
    if n < rows * cols:
        raise ValueError(f"{n} images cannot fill a {rows}×{cols} grid")
    grid = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1), np.float32)
    for i in range(rows * cols):
        r, c = divmod(i, cols)
        grid[1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + c * (w + 1): 1 + c * (w + 1) + w] = array[i]
    picture = Image.fromarray((grid * 255).round().astype(np.uint8))
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


__all__ = ["CLASS_NAMES", "DigitsJudge", "DigitsSplit", "image_grid", "load_digits_images", "psnr"]

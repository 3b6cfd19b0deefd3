"""Reference scenario R1's data: scikit-learn's 8×8 digits with a drift applied (DESIGN.md).

R1 is defined exactly, so every figure in the issues is reproducible:

* ``sklearn.datasets.load_digits()`` (1,797 real handwritten digits bundled with scikit-learn,
  no download), pixels divided by 16, so every pixel is ``k/16`` for an integer ``k`` in 0…16.
* One permutation with ``numpy.random.default_rng(0)``: the first 1,078 samples are the
  **pretraining set** (upright), the remaining 719 the **drift pool**.
* Drift (default): every drift-pool image rotated by θ degrees (30 by default; 45, 60, 90 in
  the issues) with ``scipy.ndimage.rotate(img, θ, reshape=False, order=1, mode="constant",
  cval=0)``.
* Fine-tuning on the first 256 drift-pool samples, testing on the other 463.

Other drifts are options (not part of R1's figures): ``"noise"`` (additive Gaussian noise of
standard deviation ``level``, default 0.25, clipped to [0, 1], from ``default_rng(1)``),
``"shift"`` (translation by ``level`` pixels right and down, default 1, zeros shifted in) and
``"contrast"`` (pixels multiplied by ``level``, default 0.5).
"""

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


__all__ = ["R1Data", "load_r1", "load_digits_r1", "apply_drift", "DRIFTS",
           "R1_PERMUTATION_SEED", "R1_PRETRAIN", "R1_FINETUNE", "R1_TEST", "R1_DRIFT_DEG",
           "PIXEL_LEVELS"]


#: ``numpy.random.default_rng`` seed of R1's one permutation of the 1,797 digits.
R1_PERMUTATION_SEED = 0
#: Samples in R1's pretraining set, fine-tuning set and test set (1,078 + 256 + 463 = 1,797).
R1_PRETRAIN, R1_FINETUNE, R1_TEST = 1078, 256, 463
#: R1's default drift: rotation by 30 degrees.
R1_DRIFT_DEG = 30
#: load_digits pixels are integers 0…16; R1 divides them by this.
PIXEL_LEVELS = 16
#: Drift kinds and their default ``level``: rotation angle in degrees, noise standard
#: deviation, shift in pixels, contrast factor.
DRIFTS = {"rotate": R1_DRIFT_DEG, "noise": 0.25, "shift": 1, "contrast": 0.5}
#: Seed of the ``"noise"`` drift's generator (not used by R1's rotation).
NOISE_SEED = 1


@lru_cache(maxsize=1)
def load_digits_r1():
    """All 1,797 digits in R1's permuted order: ``(images, labels)``.

    ``images`` is float64, shape (1797, 8, 8), pixels ``k/16``; ``labels`` int64 0…9. The arrays
    are read-only because they are shared by every caller.
    """
    from sklearn.datasets import load_digits    # here: importing scikit-learn takes seconds
    digits = load_digits()
    order = np.random.default_rng(R1_PERMUTATION_SEED).permutation(len(digits.target))
    images = digits.images[order].astype(np.float64) / PIXEL_LEVELS
    labels = digits.target[order].astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def apply_drift(images, drift="rotate", level=None):
    """``images`` (N×8×8 float) after the drift ``drift`` of strength ``level``.

    ``level`` defaults to :data:`DRIFTS` ``[drift]``. Rotation is R1's: bilinear
    (``order=1``), same image size, zeros outside. Images are returned as a new float64 array.
    """
    if drift not in DRIFTS:
        allowed = ", ".join(repr(d) for d in DRIFTS)
        raise ValueError(f"drift must be one of {allowed}, not {drift!r}")
    level = DRIFTS[drift] if level is None else level
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not np.isfinite(level):
        raise ValueError(f"drift level must be a finite number, not {level!r}")
    images = np.asarray(images, dtype=np.float64)
    if drift == "rotate":
        from scipy.ndimage import rotate    # here: scipy.ndimage takes seconds to import
        return np.stack([rotate(img, level, reshape=False, order=1, mode="constant", cval=0)
                         for img in images])
    if drift == "noise":
        noise = np.random.default_rng(NOISE_SEED).normal(0.0, level, images.shape)
        return np.clip(images + noise, 0.0, 1.0)
    if drift == "shift":
        if int(level) != level:
            raise ValueError(f"shift drift level must be a whole number of pixels, not {level}")
        from scipy.ndimage import shift     # here: scipy.ndimage takes seconds to import
        return np.stack([shift(img, (int(level), int(level)), order=0, mode="constant", cval=0)
                         for img in images])
    return images * level  # contrast


@dataclass(frozen=True)
class R1Data:
    """Images (float64, N×8×8, upright pixels ``k/16``) and labels (int64) of R1.

    ``finetune_images``/``test_images`` carry the drift; ``finetune_upright``/``test_upright``
    are the same samples without it (the "before drift" measurement).
    """

    drift: str
    level: float
    pretrain_images: np.ndarray
    pretrain_labels: np.ndarray
    finetune_images: np.ndarray
    finetune_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    finetune_upright: np.ndarray = field(repr=False)
    test_upright: np.ndarray = field(repr=False)

    @property
    def drift_deg(self):
        """The rotation angle (degrees), or None when the drift is not a rotation."""
        return self.level if self.drift == "rotate" else None


def load_r1(drift_deg=R1_DRIFT_DEG, *, drift="rotate", level=None):
    """R1's splits with the drift applied to the drift pool (see the module documentation).

    ``drift_deg`` is the rotation angle for R1's rotation drift; for the other drift kinds
    pass ``drift=`` and ``level=`` (``drift_deg`` is then ignored). Arrays are read-only.
    """
    if drift == "rotate" and level is None:
        level = drift_deg
    level = DRIFTS.get(drift) if level is None else level
    images, labels = load_digits_r1()
    pool = images[R1_PRETRAIN:]
    drifted = apply_drift(pool, drift, level)
    drifted.flags.writeable = False
    ft = slice(0, R1_FINETUNE)
    te = slice(R1_FINETUNE, R1_FINETUNE + R1_TEST)
    return R1Data(
        drift=drift, level=level,
        pretrain_images=images[:R1_PRETRAIN], pretrain_labels=labels[:R1_PRETRAIN],
        finetune_images=drifted[ft], finetune_labels=labels[R1_PRETRAIN:][ft],
        test_images=drifted[te], test_labels=labels[R1_PRETRAIN:][te],
        finetune_upright=pool[ft], test_upright=pool[te])

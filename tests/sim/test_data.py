import numpy as np
import pytest
from scipy.ndimage import rotate
from sklearn.datasets import load_digits

from fieldtune.sim.data import (load_r1, load_digits_r1, apply_drift, R1_PRETRAIN, R1_FINETUNE,
                                R1_TEST)


def test_split_sizes_and_types():
    data = load_r1()
    assert (R1_PRETRAIN, R1_FINETUNE, R1_TEST) == (1078, 256, 463)
    assert data.pretrain_images.shape == (1078, 8, 8)
    assert data.finetune_images.shape == data.finetune_upright.shape == (256, 8, 8)
    assert data.test_images.shape == data.test_upright.shape == (463, 8, 8)
    assert data.pretrain_labels.shape == (1078,) and data.finetune_labels.shape == (256,)
    assert data.test_labels.shape == (463,)
    for labels in (data.pretrain_labels, data.finetune_labels, data.test_labels):
        assert labels.dtype == np.int64 and set(np.unique(labels)) <= set(range(10))
    assert data.pretrain_images.dtype == data.test_images.dtype == np.float64
    assert data.drift == "rotate" and data.drift_deg == 30


def test_permutation_and_scaling_as_specified():
    # Rebuilt independently from DESIGN.md's words.
    digits = load_digits()
    order = np.random.default_rng(0).permutation(1797)
    images, labels = digits.images[order] / 16, digits.target[order]
    data = load_r1()
    np.testing.assert_array_equal(data.pretrain_images, images[:1078])
    np.testing.assert_array_equal(data.pretrain_labels, labels[:1078])
    np.testing.assert_array_equal(data.finetune_upright, images[1078:1078 + 256])
    np.testing.assert_array_equal(data.test_upright, images[1078 + 256:])
    np.testing.assert_array_equal(data.finetune_labels, labels[1078:1078 + 256])
    np.testing.assert_array_equal(data.test_labels, labels[1078 + 256:])
    # Upright pixels are exactly k/16.
    assert np.array_equal(data.pretrain_images * 16, np.rint(data.pretrain_images * 16))


def test_deterministic():
    a, b = load_r1(45), load_r1(45)
    for name in ("pretrain_images", "finetune_images", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("deg", [30, 45, 60, 90])
def test_rotation_applied_as_specified(deg):
    data = load_r1(deg)
    pool = load_digits_r1()[0][1078:]
    expect = np.stack([rotate(img, deg, reshape=False, order=1, mode="constant", cval=0)
                       for img in pool])
    np.testing.assert_array_equal(data.finetune_images, expect[:256])
    np.testing.assert_array_equal(data.test_images, expect[256:])
    assert not np.array_equal(data.test_images, data.test_upright)


def test_arrays_are_read_only():
    data = load_r1()
    with pytest.raises(ValueError):
        data.test_images[0, 0, 0] = 1.0
    with pytest.raises(ValueError):
        data.pretrain_labels[0] = 1


def test_other_drifts():
    up = load_r1().test_upright
    noisy = load_r1(drift="noise", level=0.3).test_images
    assert noisy.min() >= 0 and noisy.max() <= 1 and np.abs(noisy - up).mean() > 0.05
    shifted = load_r1(drift="shift", level=1).test_images
    np.testing.assert_array_equal(shifted[:, 1:, 1:], up[:, :-1, :-1])
    assert not shifted[:, 0, :].any() and not shifted[:, :, 0].any()
    np.testing.assert_array_equal(load_r1(drift="contrast", level=0.5).test_images, up * 0.5)
    assert load_r1(drift="contrast").drift_deg is None


def test_bad_drift_is_rejected():
    with pytest.raises(ValueError, match="drift must be one of 'rotate', 'noise', 'shift', "
                                         "'contrast', not 'blur'"):
        apply_drift(np.zeros((1, 8, 8)), "blur")
    with pytest.raises(ValueError, match="drift level must be a finite number, not nan"):
        apply_drift(np.zeros((1, 8, 8)), "rotate", float("nan"))
    with pytest.raises(ValueError, match="shift drift level must be a whole number of pixels, "
                                         "not 0.5"):
        apply_drift(np.zeros((1, 8, 8)), "shift", 0.5)

import numpy as np
import pytest

from fieldtune.sim.backbone import load_backbone
from fieldtune.sim.data import load_r1
from fieldtune.sim.scenario import r1_features, r1_float_features, dequantize_q88


SPLITS = {"train": 256, "test": 463}


def test_shapes_dtypes_and_formats():
    r1 = r1_features()
    for split, n in SPLITS.items():
        feats, logits, labels = (r1[f"{split}_{k}"] for k in ("features", "logits", "labels"))
        assert feats.shape == (n, 224) and logits.shape == (n, 10) and labels.shape == (n,)
        assert feats.dtype == logits.dtype == labels.dtype == np.int64
        # Signed Q8.8 in 16 bits; taps are post-ReLU.
        assert 0 <= feats.min() and feats.max() <= 32767
        assert -32768 <= logits.min() and logits.max() <= 32767
        assert feats.any(axis=0).sum() > 150           # most features are used
    assert r1["feature_format"] == "Q8.8" and r1["feature_frac"] == 8
    assert r1["taps"] == (128, 64, 32) and r1["features"] == 224 and r1["classes"] == 10
    assert (r1["drift"], r1["drift_deg"]) == ("rotate", 30)
    assert (r1["n_pretrain"], r1["n_finetune"], r1["n_test"]) == (1078, 256, 463)


def test_matches_int8_backbone_on_r1_samples():
    data = load_r1(60)
    r1 = r1_features(60)
    _, qb = load_backbone()
    out = qb.forward(data.finetune_images)
    np.testing.assert_array_equal(r1["train_features"], out.features_q88)
    np.testing.assert_array_equal(r1["train_logits"], out.logits_q88)
    np.testing.assert_array_equal(r1["train_labels"], data.finetune_labels)
    np.testing.assert_array_equal(r1["test_labels"], data.test_labels)


def test_accuracies():
    # Measured with the shipped backbone (int8): before drift 98.5 %; after drift 50.8 % (30
    # deg), 32.2 % (45), 28.7 % (60), 15.1 % (90).
    r1 = r1_features()
    assert r1["before_drift_accuracy"] >= 0.95
    assert r1["after_drift_accuracy"] <= 0.60
    assert r1_features(90)["after_drift_accuracy"] < r1["after_drift_accuracy"]
    z0 = r1["test_logits"].argmax(axis=1)
    assert r1["after_drift_accuracy"] == np.mean(z0 == r1["test_labels"])


def test_cached_read_only_and_a_fresh_dict():
    a, b = r1_features(), r1_features()
    assert a is not b and a["train_features"] is b["train_features"]
    a["train_features"] = None                        # a caller's dict is its own
    assert r1_features()["train_features"] is not None
    with pytest.raises(ValueError):
        b["test_logits"][0, 0] = 0


def test_float_features_are_close_to_dequantized_int8():
    q, f = r1_features(), r1_float_features()
    assert f["train_features"].dtype == np.float64
    assert np.abs(dequantize_q88(q["train_features"]) - f["train_features"]).mean() < 0.05
    assert f["before_drift_accuracy"] >= 0.95 and f["after_drift_accuracy"] <= 0.60

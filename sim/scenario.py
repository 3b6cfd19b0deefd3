"""Reference scenario R1 as the device sees it: tap features and frozen logits of the golden
int8 backbone, in the forward cache's input format.

Until the backbone runs on chip, the host computes every sample's tap features with
:class:`~fieldtune.sim.backbone.Int8Backbone` and writes them into the forward cache;
:func:`r1_features` is exactly that data. :func:`r1_float_features` is the same scenario through
the float backbone, for float references.

Formats (see docs/numerics.md, "Backbone (int8)"):

* ``*_features``: (N, 224) int64 holding signed Q8.8 16-bit values (real = value/256): tap 0 =
  flatten(pool1) at 0…127, tap 1 = flatten(pool2) at 128…191, tap 2 = dense1 at 192…223;
  flatten is channel-major (``c·H·W + y·W + x``). Taps are post-ReLU, so never negative.
* ``*_logits``: (N, 10) int64 Q8.8, the int8 backbone's frozen logits z0, saturated to int16.
* ``*_labels``: (N,) int64 digits 0…9.
"""

from functools import lru_cache

import numpy as np

from .backbone import TAPS, CLASSES, Q88_FRAC, load_backbone
from .data import (load_r1, R1_DRIFT_DEG, R1_PERMUTATION_SEED, R1_PRETRAIN, R1_FINETUNE,
                   R1_TEST)


__all__ = ["r1_features", "r1_float_features", "dequantize_q88", "scenario_parameters"]


def dequantize_q88(values):
    """Q8.8 integers -> float64 (exact)."""
    return np.asarray(values, dtype=np.float64) * 2.0 ** -Q88_FRAC


def scenario_parameters(data):
    """The parameters that define a scenario built from :class:`~fieldtune.sim.data.R1Data`."""
    return {"scenario": "R1", "drift": data.drift, "drift_level": data.level,
            "drift_deg": data.drift_deg, "permutation_seed": R1_PERMUTATION_SEED,
            "n_pretrain": R1_PRETRAIN, "n_finetune": R1_FINETUNE, "n_test": R1_TEST,
            "taps": TAPS, "features": sum(TAPS), "classes": CLASSES}


def _readonly(array):
    array.flags.writeable = False
    return array


def _accuracy(logits, labels):
    # argmax takes the first class on ties, as the device's comparator chain must too.
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def _int8_outputs(backbone, images):
    out = backbone.forward(images)
    return out.features_q88, out.logits_q88


def _float_outputs(backbone, images):
    out = backbone.forward(images)
    return out.features, out.logits


@lru_cache(maxsize=32)
def _scenario(drift_deg, drift, level, kind):
    """The dict behind :func:`r1_features` (``kind="int8"``) and :func:`r1_float_features`."""
    data = load_r1(drift_deg, drift=drift, level=level)
    float_backbone, int8_backbone = load_backbone()
    backbone, outputs = ((int8_backbone, _int8_outputs) if kind == "int8"
                         else (float_backbone, _float_outputs))
    out = {}
    for split, images, labels in (("train", data.finetune_images, data.finetune_labels),
                                  ("test", data.test_images, data.test_labels)):
        features, logits = outputs(backbone, images)
        out[f"{split}_features"] = _readonly(features)
        out[f"{split}_logits"] = _readonly(logits)
        out[f"{split}_labels"] = labels
    out["before_drift_accuracy"] = _accuracy(outputs(backbone, data.test_upright)[1],
                                             data.test_labels)
    out["after_drift_accuracy"] = _accuracy(out["test_logits"], data.test_labels)
    out["backbone"] = kind
    if kind == "int8":
        out["feature_format"], out["feature_frac"] = "Q8.8", Q88_FRAC
    else:
        out["feature_format"] = "float64"
    out.update(scenario_parameters(data))
    return out


def r1_features(drift_deg=R1_DRIFT_DEG, *, drift="rotate", level=None):
    """R1's fine-tuning and test data as the int8 backbone delivers it to the forward cache.

    Returns a new dict (arrays are shared, read-only, computed once per argument set):

    ``train_features`` (256, 224), ``train_logits`` (256, 10), ``train_labels`` (256,),
    ``test_features`` (463, 224), ``test_logits`` (463, 10), ``test_labels`` (463,)
        int64; features and logits signed Q8.8 (see the module documentation).
    ``before_drift_accuracy``
        int8 backbone (argmax of z0, first class on ties) on the 463 test samples *upright*.
    ``after_drift_accuracy``
        the same on the 463 test samples after the drift (what the adapters start from).
    ``drift``, ``drift_level``, ``drift_deg``, ``permutation_seed``, ``n_pretrain``,
    ``n_finetune``, ``n_test``, ``taps``, ``features``, ``classes``, ``feature_format``,
    ``feature_frac``, ``backbone``
        the scenario parameters.
    """
    return dict(_scenario(drift_deg, drift, level, "int8"))


def r1_float_features(drift_deg=R1_DRIFT_DEG, *, drift="rotate", level=None):
    """The keys of :func:`r1_features` from the *float* backbone: features and logits float64
    (real values), accuracies of the float backbone."""
    return dict(_scenario(drift_deg, drift, level, "float"))

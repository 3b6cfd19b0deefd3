"""R1's frozen backbone: numpy pretraining, int8 quantization and the golden int8 forward pass.

Architecture (DESIGN.md, reference scenario R1), on 8×8 single-channel images::

    conv3x3 1->8 pad 1, ReLU, max-pool 2   -> pool1 (8×4×4)    tap 0: 128 features
    conv3x3 8->16 pad 1, ReLU, max-pool 2  -> pool2 (16×2×2)   tap 1:  64 features
    dense 64->32, ReLU                     -> dense1 (32)      tap 2:  32 features
    dense 32->10                           -> frozen logits z0 (10)

**Flatten order.** A feature map of shape (C, H, W) is flattened channel-major, row-major
inside a channel (PyTorch's ``flatten``): feature ``c·H·W + y·W + x``. dense1 reads flatten(pool2)
in that order. A sample's 224 tap features are pool1 (0…127), pool2 (128…191), dense1
(192…223). Weights use PyTorch layouts: conv ``(out, in, 3, 3)``, dense ``(out, in)``.

**Pretraining** (:func:`pretrain`) runs in numpy (no PyTorch), Adam, fixed seed, and is
*bit-reproducible on any IEEE-754 machine, BLAS and thread count*: every value that enters a
reduction (matrix product, sum) lies on a dyadic grid — weights on 2^-16, activations on 2^-10,
back-propagated signals on 2^-20 (round half to even) — and the products and their sums stay
below 2^53 units (checked at run time), so float64 matrix products are *exact* whatever order
the BLAS sums in. Everything else is a correctly rounded IEEE operation (+, −, ×, ÷, √), and the
softmax's exponential is a fixed polynomial of those (:func:`_exp_nonpositive`), not libm.

**Quantization** (:func:`quantize`) gives int8 weights (per-layer symmetric scale), int32
biases and per-layer requantization by an integer multiplier and a right shift. The integer
semantics of :class:`Int8Backbone` are exact and hardware-friendly:

* input pixel ``x`` in [0, 1] → ``q0 = sat_int8(floor(x·64 + 1/2))`` (Q2.6: scale 2^-6; R1's
  upright pixels k/16 are exact).
* each layer: ``acc = Σ q_in·q_w + q_b`` in a signed accumulator (int32 is ample; the exact
  bound is :attr:`Int8Backbone.acc_bits`), then
  ``y = (acc·M + 2^(S-1)) >> S`` — multiplier ``M`` unsigned 15-bit in [2^14, 2^15), arithmetic
  right shift ``S`` (floor), i.e. **round half up** (toward +∞) of ``acc·M/2^S``.
* hidden layers: ReLU and saturation in one clamp, ``q_out = min(max(y, 0), 127)``; activation
  scales are powers of two, ``2^-e`` with ``e`` = :attr:`Int8Backbone.act_exp`.
* max-pool on the int8 values (2×2, stride 2). Requantization is monotone, so pooling before
  or after it gives the same result.
* logits: dense2's requantizer emits Q8.8 directly, ``z0 = min(max(y, -32768), 32767)`` (the
  forward cache's 16-bit logit format), so z0 is rounded once.
* taps to the cache's signed Q8.8: ``f = q·2^(8-e)`` — an exact left shift when ``e ≤ 8``;
  when ``e > 8`` a right shift by ``e-8`` with round half up. Never saturates (``|q| ≤ 127``).
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .data import load_r1


__all__ = ["FloatBackbone", "Int8Backbone", "pretrain", "quantize", "build_backbone",
           "load_backbone", "save_backbone", "read_backbone", "SHIPPED_PATH", "LAYERS", "TAPS",
           "CLASSES", "FEATURES", "PRETRAIN_DEFAULTS", "INPUT_EXP", "Q88_FRAC",
           "round_half_up_shift"]


#: Layer names, in order (PyTorch-style ``<name>.weight``/``<name>.bias`` keys).
LAYERS = ("conv1", "conv2", "dense1", "dense2")
#: Weight shapes: conv (out, in, 3, 3), dense (out, in).
SHAPES = {"conv1": (8, 1, 3, 3), "conv2": (16, 8, 3, 3), "dense1": (32, 64), "dense2": (10, 32)}
#: Features per adapter tap: flatten(pool1), flatten(pool2), dense1 output.
TAPS = (128, 64, 32)
FEATURES = sum(TAPS)
CLASSES = 10
IMAGE = 8

#: Pretraining grids (fraction bits of the dyadic grids that make pretraining exact).
WEIGHT_FRAC, ACT_FRAC, GRAD_FRAC = 16, 10, 20
#: float64 represents every integer below 2^53 exactly; sums of grid values below this bound
#: are therefore exact in any order.
EXACT_BOUND = 2.0 ** 53

#: Pretraining hyperparameters (the shipped file was made with exactly these).
PRETRAIN_DEFAULTS = {"seed": 0, "epochs": 30, "batch": 16, "lr": 2e-3, "beta1": 0.9,
                     "beta2": 0.999, "adam_eps": 1e-8}

#: Input pixels are Q2.6 (scale 2^-INPUT_EXP).
INPUT_EXP = 6
#: Fraction bits of the forward cache's signed 16-bit features and logits (Q8.8).
Q88_FRAC = 8
INT8_MIN, INT8_MAX = -128, 127
INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1
#: Requantization multipliers are normalized to [2^(MULT_BITS-1), 2^MULT_BITS).
MULT_BITS = 15
#: File format version of the shipped .npz.
FORMAT_VERSION = 1

SHIPPED_PATH = Path(__file__).resolve().parent / "data" / "r1_backbone.npz"


# -- shared layer plumbing (float or integer arrays) ----------------------------------------

def _im2col(x):
    """(N, C, H, W) -> (N·H·W, C·9) patches of a 3×3 convolution with zero padding 1.

    Column order (c, ky, kx) matches a (out, C, 3, 3) weight reshaped to (out, C·9).
    """
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[:, :, ky:ky + h, kx:kx + w] for ky in range(3) for kx in range(3)],
                    axis=2)                                   # (N, C, 9, H, W)
    return cols.transpose(0, 3, 4, 1, 2).reshape(n * h * w, c * 9)


def _col2im(cols, shape):
    """Adjoint of :func:`_im2col`: (N·H·W, C·9) -> (N, C, H, W), overlapping patches summed."""
    n, c, h, w = shape
    cols = cols.reshape(n, h, w, c, 9).transpose(0, 3, 4, 1, 2)
    xp = np.zeros((n, c, h + 2, w + 2), dtype=cols.dtype)
    for k in range(9):
        ky, kx = divmod(k, 3)
        xp[:, :, ky:ky + h, kx:kx + w] += cols[:, :, k]
    return xp[:, :, 1:-1, 1:-1]


def _rows_to_maps(rows, n, h, w):
    """(N·H·W, C) matrix-product rows -> (N, C, H, W)."""
    return rows.reshape(n, h, w, -1).transpose(0, 3, 1, 2)


def _maps_to_rows(maps):
    """(N, C, H, W) -> (N·H·W, C), the adjoint of :func:`_rows_to_maps`."""
    return maps.transpose(0, 2, 3, 1).reshape(-1, maps.shape[1])


def _pool_windows(x):
    """(N, C, H, W) -> (N, C, H/2, W/2, 4): the 2×2 windows, window order (dy, dx)."""
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(
        n, c, h // 2, w // 2, 4)


def _maxpool(x):
    return _pool_windows(x).max(axis=-1)


def _flatten(x):
    """Channel-major flatten of (N, C, H, W): feature c·H·W + y·W + x."""
    return x.reshape(x.shape[0], -1)


def _as_images(images):
    images = np.asarray(images)
    if images.ndim == 2 and images.shape == (IMAGE, IMAGE):
        images = images[None]
    if images.ndim != 3 or images.shape[1:] != (IMAGE, IMAGE):
        raise ValueError(f"images must have shape (N, {IMAGE}, {IMAGE}), not {images.shape}")
    return images[:, None, :, :]


# -- exact-grid float arithmetic (pretraining) ----------------------------------------------

def _to_grid(x, frac):
    """Round to the dyadic grid 2^-frac, half to even (exact: scaling by 2^k is exact)."""
    return np.rint(x * (2.0 ** frac)) * (2.0 ** -frac)


def _exact_matmul(a, a_frac, b, b_frac):
    """``a @ b`` of grid values, refusing when the result could be inexact in float64."""
    k = a.shape[-1]
    units = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * k
    if units * 2.0 ** (a_frac + b_frac) >= EXACT_BOUND:
        raise ArithmeticError(
            f"pretraining left the exactly representable range ({units:.3g} > 2^53 units "
            f"of 2^-{a_frac + b_frac}); lower the learning rate")
    return a @ b


_LN2 = 0.6931471805599453
_LOG2E = 1.4426950408889634
# 1/k! for the Taylor series of exp on |r| <= ln2/2 (error below 1e-16 relative).
_EXP_TAYLOR = tuple(1.0 / np.prod(np.arange(1, k + 1, dtype=np.float64)) for k in range(14))


def _exp_nonpositive(x):
    """exp(x) for x <= 0 from correctly rounded operations only (identical on every machine,
    unlike libm's exp)."""
    x = np.maximum(x, -700.0)
    k = np.floor(x * _LOG2E + 0.5)
    r = x - k * _LN2
    p = np.full_like(r, _EXP_TAYLOR[-1])
    for c in _EXP_TAYLOR[-2::-1]:
        p = p * r + c
    return np.ldexp(p, k.astype(np.int64))


def _softmax_exact(z):
    """Softmax of grid logits, rows summing exactly (exponentials rounded to 2^-40)."""
    e = _to_grid(_exp_nonpositive(z - z.max(axis=1, keepdims=True)), 40)
    return e / e.sum(axis=1, keepdims=True)


def _forward(params, x, exact):
    """Float forward pass. ``exact`` rounds inputs and activations to the pretraining grids
    (and checks every product); returns the intermediates the backward pass needs."""
    rnd = (lambda v: _to_grid(v, ACT_FRAC)) if exact else (lambda v: v)
    mm = ((lambda a, fa, b: _exact_matmul(a, fa, b, WEIGHT_FRAC)) if exact
          else (lambda a, fa, b: a @ b))
    n = x.shape[0]
    x = rnd(x)
    cols1 = _im2col(x)
    h1 = rnd(_rows_to_maps(mm(cols1, ACT_FRAC, params["conv1.weight"].reshape(8, -1).T)
                           + params["conv1.bias"], n, 8, 8))
    r1 = np.maximum(h1, 0)
    p1 = _maxpool(r1)
    cols2 = _im2col(p1)
    h2 = rnd(_rows_to_maps(mm(cols2, ACT_FRAC, params["conv2.weight"].reshape(16, -1).T)
                           + params["conv2.bias"], n, 4, 4))
    r2 = np.maximum(h2, 0)
    p2 = _maxpool(r2)
    f2 = _flatten(p2)
    h3 = rnd(mm(f2, ACT_FRAC, params["dense1.weight"].T) + params["dense1.bias"])
    a3 = np.maximum(h3, 0)
    z = rnd(mm(a3, ACT_FRAC, params["dense2.weight"].T) + params["dense2.bias"])
    return {"cols1": cols1, "h1": h1, "r1": r1, "p1": p1, "cols2": cols2, "h2": h2, "r2": r2,
            "p2": p2, "f2": f2, "h3": h3, "a3": a3, "z": z}


def _unpool(grad, pre):
    """Route a max-pool output gradient to the first maximum of each 2×2 window of ``pre``."""
    n, c, h, w = pre.shape
    win = _pool_windows(pre)
    onehot = np.arange(4) == win.argmax(axis=-1)[..., None]
    g = onehot * grad[..., None]                               # (N, C, H/2, W/2, 4)
    return g.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def _backward(params, cache, labels):
    """Gradients of the mean softmax cross-entropy, every signal rounded to 2^-GRAD_FRAC."""
    g_round = lambda v: _to_grid(v, GRAD_FRAC)
    n = labels.shape[0]
    p = _softmax_exact(cache["z"])
    p[np.arange(n), labels] -= 1.0
    gz = g_round(p / n)
    grads = {"dense2.weight": _exact_matmul(gz.T, GRAD_FRAC, cache["a3"], ACT_FRAC),
             "dense2.bias": gz.sum(axis=0)}
    g3 = g_round(_exact_matmul(gz, GRAD_FRAC, params["dense2.weight"], WEIGHT_FRAC))
    g3 = g3 * (cache["h3"] > 0)
    grads["dense1.weight"] = _exact_matmul(g3.T, GRAD_FRAC, cache["f2"], ACT_FRAC)
    grads["dense1.bias"] = g3.sum(axis=0)
    gf2 = g_round(_exact_matmul(g3, GRAD_FRAC, params["dense1.weight"], WEIGHT_FRAC))
    g2 = _unpool(gf2.reshape(cache["p2"].shape), cache["r2"]) * (cache["h2"] > 0)
    g2rows = _maps_to_rows(g2)
    grads["conv2.weight"] = _exact_matmul(g2rows.T, GRAD_FRAC, cache["cols2"],
                                          ACT_FRAC).reshape(SHAPES["conv2"])
    grads["conv2.bias"] = g2rows.sum(axis=0)
    gcols2 = g_round(_exact_matmul(g2rows, GRAD_FRAC, params["conv2.weight"].reshape(16, -1),
                                   WEIGHT_FRAC))
    gp1 = _col2im(gcols2, cache["p1"].shape)
    g1 = _unpool(gp1, cache["r1"]) * (cache["h1"] > 0)
    g1rows = _maps_to_rows(g1)
    grads["conv1.weight"] = _exact_matmul(g1rows.T, GRAD_FRAC, cache["cols1"],
                                          ACT_FRAC).reshape(SHAPES["conv1"])
    grads["conv1.bias"] = g1rows.sum(axis=0)
    return grads


# -- float backbone -------------------------------------------------------------------------

@dataclass(frozen=True)
class BackboneOutput:
    """Taps ``(pool1 (N,8,4,4), pool2 (N,16,2,2), dense1 (N,32))`` and logits (N, 10)."""

    taps: tuple
    logits: np.ndarray

    @property
    def features(self):
        """The (N, 224) tap features in the documented flatten order."""
        return np.concatenate([_flatten(t) if t.ndim > 2 else t for t in self.taps], axis=1)


@dataclass(frozen=True)
class FloatBackbone:
    """The float (float64) backbone. ``params`` maps PyTorch-style names
    (``conv1.weight``, ``conv1.bias``, …) to arrays in PyTorch layouts."""

    params: dict

    def __post_init__(self):
        for name in LAYERS:
            w, b = self.params.get(f"{name}.weight"), self.params.get(f"{name}.bias")
            if w is None or b is None or w.shape != SHAPES[name] or b.shape != SHAPES[name][:1]:
                raise ValueError(f"backbone parameters of {name} must have shapes "
                                 f"{SHAPES[name]} and {SHAPES[name][:1]}")

    def forward(self, images, *, exact=False):
        """Run images (N×8×8 float). ``exact`` uses the pretraining grids (bit-reproducible)."""
        c = _forward(self.params, _as_images(images).astype(np.float64), exact)
        return BackboneOutput(taps=(c["p1"], c["p2"], c["a3"]), logits=c["z"])

    def predict(self, images):
        return self.forward(images).logits.argmax(axis=1)

    def accuracy(self, images, labels):
        return float(np.mean(self.predict(images) == np.asarray(labels)))


def pretrain(images, labels, *, seed=PRETRAIN_DEFAULTS["seed"],
             epochs=PRETRAIN_DEFAULTS["epochs"], batch=PRETRAIN_DEFAULTS["batch"],
             lr=PRETRAIN_DEFAULTS["lr"], progress=None):
    """Pretrain the float backbone on ``images`` (N×8×8, pixels in [0, 1]) with Adam.

    He-uniform initialization and a reshuffle every epoch, both from
    ``numpy.random.default_rng(seed)``; the last partial batch of an epoch is used too.
    Bit-reproducible (see the module documentation). ``progress(epoch, epochs)`` is called
    after every epoch when given.
    """
    beta1, beta2, adam_eps = (PRETRAIN_DEFAULTS[k] for k in ("beta1", "beta2", "adam_eps"))
    x = _to_grid(_as_images(images).astype(np.float64), ACT_FRAC)
    y = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    params = {}
    for name in LAYERS:
        shape = SHAPES[name]
        limit = np.sqrt(6.0 / int(np.prod(shape[1:])))
        params[f"{name}.weight"] = _to_grid(rng.uniform(-limit, limit, shape), WEIGHT_FRAC)
        params[f"{name}.bias"] = np.zeros(shape[:1])
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(v) for k, v in params.items()}
    # Powers of beta by repeated multiplication: correctly rounded, unlike pow().
    b1t = b2t = 1.0
    for epoch in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch):
            idx = order[start:start + batch]
            grads = _backward(params, _forward(params, x[idx], True), y[idx])
            b1t *= beta1
            b2t *= beta2
            for k, g in grads.items():
                m[k] = beta1 * m[k] + (1.0 - beta1) * g
                v[k] = beta2 * v[k] + (1.0 - beta2) * (g * g)
                step = (lr * (m[k] / (1.0 - b1t))) / (np.sqrt(v[k] / (1.0 - b2t)) + adam_eps)
                params[k] = _to_grid(params[k] - step, WEIGHT_FRAC)
        if progress is not None:
            progress(epoch + 1, epochs)
    return FloatBackbone(params)


# -- int8 backbone --------------------------------------------------------------------------

def round_half_up_shift(x, shift):
    """``x · 2^-shift`` rounded half up (toward +inf), for integer arrays; ``shift`` may be
    negative (an exact left shift)."""
    x = np.asarray(x, dtype=np.int64)
    if shift <= 0:
        return x << -shift
    return (x + (1 << (shift - 1))) >> shift


def _requantize(acc, mult, shift, lo, hi):
    """``clamp((acc·M + 2^(S-1)) >> S, lo, hi)``: round half up, then saturate."""
    return np.clip((acc * mult + (1 << (shift - 1))) >> shift, lo, hi)


def _multiplier(real):
    """A positive real multiplier as ``(M, S)`` with ``M`` in [2^14, 2^15): real ≈ M·2^-S."""
    frac, exp = np.frexp(real)                       # real = frac·2^exp, frac in [0.5, 1)
    mult = int(np.rint(frac * (1 << MULT_BITS)))
    shift = MULT_BITS - int(exp)
    if mult == 1 << MULT_BITS:
        mult, shift = mult >> 1, shift - 1
    if not 1 <= shift <= 62:
        raise ValueError(f"requantization shift must be from 1 to 62, not {shift}")
    return mult, shift


@dataclass(frozen=True)
class Int8Output:
    """Integer taps (int8 values in int64 arrays, scales ``2^-act_exp``) and Q8.8 logits."""

    taps: tuple
    logits_q88: np.ndarray
    act_exp: tuple

    @property
    def features_q88(self):
        """(N, 224) signed Q8.8 tap features (int64), the forward cache's input format."""
        return np.concatenate(
            [round_half_up_shift(_flatten(t) if t.ndim > 2 else t, e - Q88_FRAC)
             for t, e in zip(self.taps, self.act_exp)], axis=1)


@dataclass(frozen=True)
class Int8Backbone:
    """The golden int8 backbone (see the module documentation for its integer semantics).

    Attributes
    ----------
    weights : dict
        Layer name -> int8 weights (PyTorch layout).
    biases : dict
        Layer name -> int32 biases at scale ``2^-e_in · s_w``.
    mult, shift : dict
        Layer name -> requantization multiplier ``M`` (15-bit, in [2^14, 2^15)) and shift ``S``.
    act_exp : tuple
        Activation exponents ``(e_in, e_pool1, e_pool2, e_dense1)``: values are
        ``q·2^-e``. ``e_in`` is :data:`INPUT_EXP`. Logits are Q8.8.
    weight_scale : dict
        Layer name -> float weight scale ``s_w`` (for dequantization and documentation).
    """

    weights: dict
    biases: dict
    mult: dict
    shift: dict
    act_exp: tuple
    weight_scale: dict

    def quantize_input(self, images):
        """Pixels (N×8×8 float) -> (N, 1, 8, 8) Q2.6 integers, round half up, saturated."""
        x = _as_images(images).astype(np.float64)
        return np.clip(np.floor(x * (1 << INPUT_EXP) + 0.5), INT8_MIN, INT8_MAX).astype(np.int64)

    def _layer(self, name, x):
        w = self.weights[name].astype(np.int64)
        return x @ w.reshape(w.shape[0], -1).T + self.biases[name].astype(np.int64)

    def forward(self, images):
        """Bit-exact int8 forward pass of images (N×8×8 float pixels)."""
        q0 = self.quantize_input(images)
        n = q0.shape[0]
        relu8 = lambda acc, name: _requantize(acc, self.mult[name], self.shift[name], 0, INT8_MAX)
        a1 = _rows_to_maps(relu8(self._layer("conv1", _im2col(q0)), "conv1"), n, 8, 8)
        p1 = _maxpool(a1)
        a2 = _rows_to_maps(relu8(self._layer("conv2", _im2col(p1)), "conv2"), n, 4, 4)
        p2 = _maxpool(a2)
        a3 = relu8(self._layer("dense1", _flatten(p2)), "dense1")
        z = _requantize(self._layer("dense2", a3), self.mult["dense2"], self.shift["dense2"],
                        INT16_MIN, INT16_MAX)
        return Int8Output(taps=(p1, p2, a3), logits_q88=z, act_exp=tuple(self.act_exp[1:]))

    def predict(self, images):
        return self.forward(images).logits_q88.argmax(axis=1)

    def accuracy(self, images, labels):
        return float(np.mean(self.predict(images) == np.asarray(labels)))

    @property
    def acc_bits(self):
        """Layer name -> signed accumulator width that holds every possible ``acc`` (inputs
        anywhere in their int8 range), bias included."""
        bits = {}
        for i, name in enumerate(LAYERS):
            w = self.weights[name].astype(np.int64).reshape(SHAPES[name][0], -1)
            in_max = INT8_MAX if i else -INT8_MIN
            bound = int((np.abs(w).sum(axis=1) * in_max + np.abs(self.biases[name])).max())
            bits[name] = bound.bit_length() + 1
        return bits


def _act_exp(values):
    """The largest ``e`` with ``max(values)·2^e <= 127``: a power-of-two int8 scale that
    does not clip the calibration data."""
    peak = float(np.max(values))
    if peak <= 0:
        raise ValueError("cannot calibrate an activation that is never positive")
    e = 0
    while peak * 2.0 ** e > INT8_MAX:
        e -= 1
    while peak * 2.0 ** (e + 1) <= INT8_MAX:
        e += 1
    return e


def quantize(backbone, calibration_images):
    """Quantize a :class:`FloatBackbone` to an :class:`Int8Backbone`.

    Weights: per-layer symmetric scale ``s_w = max|w|/127``, ``q_w = round_half_even(w/s_w)``.
    Activations: power-of-two scales from the largest value of each tap over the calibration
    images (exact forward pass, so the result is reproducible). Biases:
    ``round_half_even(b / (2^-e_in·s_w))`` in int32.
    """
    out = backbone.forward(calibration_images, exact=True)
    p1, p2, a3 = out.taps
    act_exp = (INPUT_EXP, _act_exp(p1), _act_exp(p2), _act_exp(a3))
    in_exp = {"conv1": act_exp[0], "conv2": act_exp[1], "dense1": act_exp[2],
              "dense2": act_exp[3]}
    out_exp = {"conv1": act_exp[1], "conv2": act_exp[2], "dense1": act_exp[3],
               "dense2": Q88_FRAC}
    weights, biases, mult, shift, scale = {}, {}, {}, {}, {}
    for name in LAYERS:
        w = backbone.params[f"{name}.weight"]
        b = backbone.params[f"{name}.bias"]
        s_w = float(np.abs(w).max()) / INT8_MAX
        weights[name] = np.clip(np.rint(w / s_w), -INT8_MAX, INT8_MAX).astype(np.int8)
        acc_scale = 2.0 ** -in_exp[name] * s_w
        bq = np.rint(b / acc_scale)
        if np.abs(bq).max() >= 2 ** 31:
            raise ValueError(f"bias of {name} does not fit int32")
        biases[name] = bq.astype(np.int32)
        mult[name], shift[name] = _multiplier(acc_scale * 2.0 ** out_exp[name])
        scale[name] = s_w
    return Int8Backbone(weights=weights, biases=biases, mult=mult, shift=shift,
                        act_exp=act_exp, weight_scale=scale)


def build_backbone(seed=PRETRAIN_DEFAULTS["seed"], *, epochs=PRETRAIN_DEFAULTS["epochs"],
                   progress=None):
    """Pretrain on R1's upright pretraining set and quantize (calibrating on the same set):
    ``(FloatBackbone, Int8Backbone)``."""
    data = load_r1()
    fb = pretrain(data.pretrain_images, data.pretrain_labels, seed=seed, epochs=epochs,
                  progress=progress)
    return fb, quantize(fb, data.pretrain_images)


# -- files ----------------------------------------------------------------------------------

def save_backbone(path, float_backbone, int8_backbone, *, seed, epochs):
    """Write both backbones to a compressed .npz (integer arrays exactly, float weights as
    int32 multiples of 2^-16, which they are)."""
    arrays = {"format_version": np.int64(FORMAT_VERSION), "seed": np.int64(seed),
              "epochs": np.int64(epochs), "act_exp": np.asarray(int8_backbone.act_exp, np.int64)}
    for key, value in float_backbone.params.items():
        units = value * 2.0 ** WEIGHT_FRAC
        if not np.array_equal(units, np.rint(units)):
            raise ValueError(f"float parameter {key} is not on the 2^-{WEIGHT_FRAC} grid")
        arrays[f"float.{key}"] = units.astype(np.int32)
    for name in LAYERS:
        arrays[f"int8.{name}.weight"] = int8_backbone.weights[name]
        arrays[f"int8.{name}.bias"] = int8_backbone.biases[name]
        arrays[f"int8.{name}.mult"] = np.int64(int8_backbone.mult[name])
        arrays[f"int8.{name}.shift"] = np.int64(int8_backbone.shift[name])
        arrays[f"int8.{name}.weight_scale"] = np.float64(int8_backbone.weight_scale[name])
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def read_backbone(path):
    """Read a file written by :func:`save_backbone`: ``(FloatBackbone, Int8Backbone, meta)``."""
    with np.load(path) as z:
        version = int(z["format_version"])
        if version != FORMAT_VERSION:
            raise ValueError(f"backbone file format must be {FORMAT_VERSION}, not {version}")
        params = {}
        for name in LAYERS:
            for kind in ("weight", "bias"):
                params[f"{name}.{kind}"] = (z[f"float.{name}.{kind}"].astype(np.float64)
                                            * 2.0 ** -WEIGHT_FRAC)
        fields = {"weights": {}, "biases": {}, "mult": {}, "shift": {}, "weight_scale": {}}
        for name in LAYERS:
            fields["weights"][name] = z[f"int8.{name}.weight"]
            fields["biases"][name] = z[f"int8.{name}.bias"]
            fields["mult"][name] = int(z[f"int8.{name}.mult"])
            fields["shift"][name] = int(z[f"int8.{name}.shift"])
            fields["weight_scale"][name] = float(z[f"int8.{name}.weight_scale"])
        int8 = Int8Backbone(act_exp=tuple(int(e) for e in z["act_exp"]), **fields)
        meta = {"seed": int(z["seed"]), "epochs": int(z["epochs"])}
    return FloatBackbone(params), int8, meta


@lru_cache(maxsize=4)
def load_backbone(path=None):
    """``(FloatBackbone, Int8Backbone)`` from ``path`` or the shipped
    ``fieldtune/sim/data/r1_backbone.npz``; when the shipped file is missing, pretrain it with
    the defaults (a few seconds) instead."""
    if path is None and not SHIPPED_PATH.exists():
        return build_backbone()
    fb, qb, _ = read_backbone(SHIPPED_PATH if path is None else path)
    return fb, qb

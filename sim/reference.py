"""Float references on R1's samples, as InstantFT compares (DESIGN.md).

Always available (numpy):

* :func:`train_skip_adapters` — the device's first-order algorithm in float: logits
  ``z = z0 + Σ_t W_t·f_t`` (dense ``W`` 10×224 starting at zero, or low-rank per tap
  ``z = z0 + Σ_t B_t·A_t·f_t`` with ``B_t = 0`` and ``A_t`` small random), softmax
  cross-entropy averaged over the batch, plain SGD, batch 16, 10 epochs; mini-batches in cache
  order (samples 0–15, 16–31, …) unless ``shuffle``.
* :func:`train_mezo` — MeZO/SPSA zeroth order on the same dense adapters: per step and query
  draw ``z`` (Gaussian, or uniform on [−√3, √3], also unit variance), ``g = (L(W+εz) −
  L(W−εz)) / 2ε`` on one mini-batch, ``W ← W − η·g·z`` (averaged over ``q`` queries).

With PyTorch (extra ``torch``), the backbone fine-tuning baselines :func:`train_torch`:
FT-All, FT-Last, LoRA-All (rank 4 on every layer) and LoRA-Last; without it they return a
result with ``accuracy=None`` and ``reason="not run: PyTorch not installed"``.

Every function returns a :class:`ReferenceResult` with the final test accuracy and its curve
(per epoch, or every ``eval_every`` steps, starting from the untrained point).
:func:`mean_over_seeds` repeats one over seeds. Defaults are documented in :data:`DEFAULTS`.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from .backbone import TAPS, CLASSES, LAYERS, load_backbone
from .data import load_r1, R1_DRIFT_DEG
from .scenario import r1_features, r1_float_features, dequantize_q88


__all__ = ["ReferenceResult", "SeedSummary", "DEFAULTS", "train_skip_adapters", "train_mezo",
           "train_torch", "torch_status", "mean_over_seeds", "r1_reference_data",
           "TORCH_METHODS", "float_references"]


#: Default hyperparameters of each reference (lr = η; eps = ε of MeZO). The skip adapters' η =
#: 2^-4 and MeZO's ε = 2^-6 are the device defaults ([train] lr_shift 4, eps_shift 6); MeZO's
#: η = 2^-11 was the best of 2^-12…2^-10 (mean of 5 seeds, 5,000 steps).
DEFAULTS = {
    "skip_adapters": {"epochs": 10, "batch": 16, "lr": 2.0 ** -4, "rank": None, "a_init": 1.0},
    "mezo": {"steps": 5000, "batch": 16, "eps": 2.0 ** -6, "lr": 2.0 ** -11, "queries": 1,
             "eval_every": 250},
    "torch": {"epochs": 10, "batch": 16, "rank": 4, "lr": 1e-2},
}
_FO, _ZO, _TORCH = DEFAULTS["skip_adapters"], DEFAULTS["mezo"], DEFAULTS["torch"]
#: PyTorch baselines: fine-tune every layer, only the last layer, or LoRA adapters (rank 4)
#: on every layer / the last layer.
TORCH_METHODS = ("ft_all", "ft_last", "lora_all", "lora_last")


@dataclass(frozen=True)
class ReferenceResult:
    """One reference run.

    ``accuracy`` is the final test accuracy (None when not run, with ``reason``);
    ``curve_x`` counts epochs or steps (``curve_unit``), starting at 0 (untrained);
    ``curve_accuracy`` the test accuracy there. ``seconds`` is wall-clock training time.
    """

    name: str
    accuracy: float | None
    curve_x: tuple = ()
    curve_accuracy: tuple = ()
    curve_unit: str = "epoch"
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    reason: str | None = None

    @property
    def ran(self):
        return self.accuracy is not None


@dataclass(frozen=True)
class SeedSummary:
    """A reference repeated over seeds: mean and standard deviation of the final accuracy."""

    name: str
    seeds: tuple
    accuracies: tuple
    mean: float | None
    std: float | None
    results: tuple
    reason: str | None = None


def mean_over_seeds(fn, seeds=(0, 1, 2), **kwargs):
    """Run ``fn(seed=s, **kwargs)`` for every seed (at least 3) and summarize."""
    seeds = tuple(seeds)
    if len(seeds) < 3:
        raise ValueError(f"seeds must list at least 3 seeds, not {len(seeds)}")
    results = tuple(fn(seed=s, **kwargs) for s in seeds)
    if not all(r.ran for r in results):
        return SeedSummary(results[0].name, seeds, (), None, None, results, results[0].reason)
    acc = np.array([r.accuracy for r in results])
    return SeedSummary(results[0].name, seeds, tuple(acc.tolist()), float(acc.mean()),
                       float(acc.std()), results)


def r1_reference_data(drift_deg=R1_DRIFT_DEG, *, source="int8"):
    """R1's features as float arrays: ``source="int8"`` dequantizes :func:`r1_features`
    (exactly what the device sees), ``"float"`` takes the float backbone's taps."""
    if source == "int8":
        r1 = r1_features(drift_deg)
        return {k: (dequantize_q88(v) if k.endswith(("_features", "_logits")) else v)
                for k, v in r1.items()}
    if source == "float":
        return r1_float_features(drift_deg)
    raise ValueError(f"source must be one of 'int8', 'float', not {source!r}")


# -- shared pieces --------------------------------------------------------------------------

def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _cross_entropy(z, labels):
    zs = z - z.max(axis=1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def _accuracy(z, labels):
    return float(np.mean(z.argmax(axis=1) == labels))


def _batches(n, batch, epoch_rng):
    """Mini-batch index arrays of one epoch: cache order, or shuffled by ``epoch_rng``."""
    order = np.arange(n) if epoch_rng is None else epoch_rng.permutation(n)
    return [order[i:i + batch] for i in range(0, n, batch)]


def _check_split(features, logits, labels, taps):
    features = np.asarray(features, dtype=np.float64)
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if features.ndim != 2 or features.shape[1] != sum(taps):
        raise ValueError(f"features must have shape (N, {sum(taps)}), not {features.shape}")
    if logits.shape != (len(features), CLASSES) or labels.shape != (len(features),):
        raise ValueError(f"logits must have shape ({len(features)}, {CLASSES}) and labels "
                         f"({len(features)},), not {logits.shape} and {labels.shape}")
    return features, logits, labels


# -- first order: skip adapters ------------------------------------------------------------

class _SkipAdapters:
    """Dense (rank None) or per-tap low-rank skip adapters and their gradients."""

    def __init__(self, taps, rank, a_init, rng):
        self.taps = taps
        self.bounds = np.cumsum((0,) + tuple(taps))
        self.rank = rank
        if rank is None:
            self.params = [np.zeros((CLASSES, sum(taps)))]
        else:
            self.params = []
            for n in taps:
                self.params += [rng.normal(0.0, a_init / np.sqrt(n), (rank, n)),  # A_t
                                np.zeros((CLASSES, rank))]                          # B_t

    def _slices(self, f):
        return [f[:, self.bounds[t]:self.bounds[t + 1]] for t in range(len(self.taps))]

    def logits(self, f, z0):
        if self.rank is None:
            return z0 + f @ self.params[0].T
        z = z0.copy()
        for t, ft in enumerate(self._slices(f)):
            a, b = self.params[2 * t], self.params[2 * t + 1]
            z += (ft @ a.T) @ b.T
        return z

    def grads(self, f, dz):
        if self.rank is None:
            return [dz.T @ f]
        out = []
        for t, ft in enumerate(self._slices(f)):
            a, b = self.params[2 * t], self.params[2 * t + 1]
            out += [(dz @ b).T @ ft, dz.T @ (ft @ a.T)]
        return out


def train_skip_adapters(train_features, train_logits, train_labels, test_features,
                        test_logits, test_labels, *, epochs=_FO["epochs"], batch=_FO["batch"],
                        lr=_FO["lr"], rank=_FO["rank"], a_init=_FO["a_init"], taps=TAPS,
                        shuffle=False, seed=0, curve=True, w0=None):
    """Float first-order skip adapters (see the module documentation).

    Features and logits are real values (dequantize Q8.8 first). ``rank=None`` trains the dense
    10×224 adapter from zero; an integer trains per-tap LoRA-style adapters of that rank with
    ``A_t ~ N(0, (a_init/√n_t)²)`` from ``default_rng(seed)`` and ``B_t = 0``. The gradient is
    the batch mean; the last batch of an epoch may be short. ``seed`` also shuffles when
    ``shuffle``. ``curve=False`` evaluates only after training, outside the timing, so
    ``seconds`` is training alone (the curve is then just the final point). ``w0``: dense
    only, start weights (10×224, real values) instead of zero (``fieldtune bench accuracy``
    pairs device and float runs from the same start).
    """
    f, z0, y = _check_split(train_features, train_logits, train_labels, taps)
    tf, tz0, ty = _check_split(test_features, test_logits, test_labels, taps)
    rng = np.random.default_rng(seed)
    model = _SkipAdapters(tuple(taps), rank, a_init, rng)
    if w0 is not None:
        if rank is not None:
            raise ValueError(f"w0 (start weights) is for the dense adapter (rank None), "
                             f"not rank {rank}")
        w0 = np.asarray(w0, dtype=np.float64)
        if w0.shape != model.params[0].shape:
            raise ValueError(f"w0 must have shape {model.params[0].shape}, not {w0.shape}")
        model.params[0][...] = w0
    test = lambda: _accuracy(model.logits(tf, tz0), ty)
    start = time.perf_counter()
    points = [test()] if curve else []
    for _ in range(epochs):
        for idx in _batches(len(y), batch, rng if shuffle else None):
            p = _softmax(model.logits(f[idx], z0[idx]))
            p[np.arange(len(idx)), y[idx]] -= 1.0
            for param, g in zip(model.params, model.grads(f[idx], p / len(idx))):
                param -= lr * g
        if curve:
            points.append(test())
    seconds = time.perf_counter() - start
    xs = tuple(range(epochs + 1)) if curve else (epochs,)
    points = points if curve else [test()]
    name = "skip_adapters" if rank is None else f"skip_adapters_rank{rank}"
    return ReferenceResult(name, points[-1], xs, tuple(points), "epoch",
                           {"epochs": epochs, "batch": batch, "lr": lr, "rank": rank,
                            "shuffle": shuffle, "seed": seed}, seconds)


# -- zeroth order: MeZO ---------------------------------------------------------------------

def train_mezo(train_features, train_logits, train_labels, test_features, test_logits,
               test_labels, *, steps=_ZO["steps"], batch=_ZO["batch"], eps=_ZO["eps"],
               lr=_ZO["lr"], queries=_ZO["queries"], distribution="gaussian",
               eval_every=_ZO["eval_every"], taps=TAPS, shuffle=False, seed=0):
    """Float MeZO (SPSA) on the dense skip adapter (10×224, from zero).

    Step ``k`` uses mini-batch ``k mod (N/batch)`` in cache order (reshuffled each pass when
    ``shuffle``). ``distribution`` is ``"gaussian"`` (z ~ N(0, 1)) or ``"uniform"``
    (z ~ U(−√3, √3): same variance, PeZO's cheap generator). All draws come from
    ``default_rng(seed)``.
    """
    if distribution not in ("gaussian", "uniform"):
        raise ValueError(f"distribution must be one of 'gaussian', 'uniform', "
                         f"not {distribution!r}")
    f, z0, y = _check_split(train_features, train_logits, train_labels, taps)
    tf, tz0, ty = _check_split(test_features, test_logits, test_labels, taps)
    rng = np.random.default_rng(seed)
    w = np.zeros((CLASSES, sum(taps)))
    half_width = np.sqrt(3.0)
    draw = ((lambda: rng.standard_normal(w.shape)) if distribution == "gaussian"
            else (lambda: rng.uniform(-half_width, half_width, w.shape)))
    batches = []
    start = time.perf_counter()
    xs, curve = [0], [_accuracy(tz0 + tf @ w.T, ty)]
    for step in range(1, steps + 1):
        if not batches:
            batches = _batches(len(y), batch, rng if shuffle else None)
        idx = batches.pop(0)
        fb, zb, yb = f[idx], z0[idx], y[idx]
        update = np.zeros_like(w)
        for _ in range(queries):
            z = draw()
            lp = _cross_entropy(zb + fb @ (w + eps * z).T, yb)
            lm = _cross_entropy(zb + fb @ (w - eps * z).T, yb)
            update += (lp - lm) / (2 * eps) * z
        w -= lr * update / queries
        if step % eval_every == 0 or step == steps:
            xs.append(step)
            curve.append(_accuracy(tz0 + tf @ w.T, ty))
    seconds = time.perf_counter() - start
    return ReferenceResult(f"mezo_{distribution}", curve[-1], tuple(xs), tuple(curve), "step",
                           {"steps": steps, "batch": batch, "eps": eps, "lr": lr,
                            "queries": queries, "distribution": distribution,
                            "shuffle": shuffle, "seed": seed}, seconds)


# -- PyTorch baselines ----------------------------------------------------------------------

def torch_status():
    """``(torch module or None, reason)``."""
    try:
        import torch                            # optional (the torch extra)
    except ImportError:
        return None, "not run: PyTorch not installed"
    return torch, None


def _torch_model(torch, backbone, method, rank, seed):
    """The float backbone in PyTorch with the trainable parameters of ``method``."""
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(seed)
    lora_layers = {"lora_all": LAYERS, "lora_last": LAYERS[-1:]}.get(method, ())

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.frozen = {}
            for name in LAYERS:
                w = torch.tensor(backbone.params[f"{name}.weight"], dtype=torch.float32)
                b = torch.tensor(backbone.params[f"{name}.bias"], dtype=torch.float32)
                train_base = method == "ft_all" or (method == "ft_last" and name == LAYERS[-1])
                setattr(self, f"{name}_w", nn.Parameter(w, requires_grad=train_base))
                setattr(self, f"{name}_b", nn.Parameter(b, requires_grad=train_base))
                if name in lora_layers:
                    fan_in = int(np.prod(w.shape[1:]))
                    a = torch.randn(rank, fan_in) / np.sqrt(fan_in)
                    setattr(self, f"{name}_lora_a", nn.Parameter(a))
                    setattr(self, f"{name}_lora_b", nn.Parameter(torch.zeros(w.shape[0], rank)))

        def weight(self, name):
            w = getattr(self, f"{name}_w")
            if name in lora_layers:
                delta = getattr(self, f"{name}_lora_b") @ getattr(self, f"{name}_lora_a")
                w = w + delta.reshape(w.shape)
            return w

        def forward(self, x):
            x = F.max_pool2d(F.relu(F.conv2d(x, self.weight("conv1"), self.conv1_b, padding=1)), 2)
            x = F.max_pool2d(F.relu(F.conv2d(x, self.weight("conv2"), self.conv2_b, padding=1)), 2)
            x = F.relu(F.linear(x.flatten(1), self.weight("dense1"), self.dense1_b))
            return F.linear(x, self.weight("dense2"), self.dense2_b)

    return Backbone()


def train_torch(method, drift_deg=R1_DRIFT_DEG, *, epochs=_TORCH["epochs"],
                batch=_TORCH["batch"], lr=_TORCH["lr"], rank=_TORCH["rank"], seed=0,
                backbone=None, curve=True):
    """A PyTorch baseline on R1's images, starting from the pretrained float backbone.

    ``method`` is one of :data:`TORCH_METHODS`. Adam (learning rate ``lr``: 1e-2 was the best
    or within noise of the best of {1e-3, 3e-3, 1e-2, 3e-2} for all four methods), softmax
    cross-entropy, batches of 16 reshuffled every epoch by
    ``torch.Generator().manual_seed(seed)``; LoRA: ``W + B·A`` with ``B = 0`` and
    ``A ~ N(0, 1/fan_in)`` (convolutions as (out, in·3·3) matrices), scale 1.
    ``curve=False`` evaluates only after training, outside the timing (``seconds`` is training
    alone).
    """
    if method not in TORCH_METHODS:
        allowed = ", ".join(repr(m) for m in TORCH_METHODS)
        raise ValueError(f"method must be one of {allowed}, not {method!r}")
    params = {"epochs": epochs, "batch": batch, "lr": lr, "rank": rank, "seed": seed,
              "drift_deg": drift_deg}
    torch, reason = torch_status()
    if torch is None:
        return ReferenceResult(method, None, params=params, reason=reason)
    data = load_r1(drift_deg)
    fb = load_backbone()[0] if backbone is None else backbone
    model = _torch_model(torch, fb, method, rank, seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=lr)
    x = torch.tensor(data.finetune_images, dtype=torch.float32)[:, None]
    y = torch.tensor(data.finetune_labels)
    tx = torch.tensor(data.test_images, dtype=torch.float32)[:, None]
    ty = torch.tensor(data.test_labels)
    gen = torch.Generator().manual_seed(seed)

    def test_accuracy():
        with torch.no_grad():
            return int((model(tx).argmax(1) == ty).sum()) / len(ty)

    start = time.perf_counter()
    points = [test_accuracy()] if curve else []
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        if curve:
            points.append(test_accuracy())
    seconds = time.perf_counter() - start
    xs = tuple(range(epochs + 1)) if curve else (epochs,)
    points = points if curve else [test_accuracy()]
    return ReferenceResult(method, points[-1], xs, tuple(points), "epoch", params, seconds)


# -- all of them ----------------------------------------------------------------------------

def float_references(drift_deg=R1_DRIFT_DEG, *, seed=0, source="int8", epochs=10, steps=5000,
                     torch_methods=TORCH_METHODS):
    """Every reference once on R1 (name -> :class:`ReferenceResult`): skip adapters, MeZO
    Gaussian and uniform on ``source`` features, and the PyTorch baselines (not run without
    PyTorch)."""
    d = r1_reference_data(drift_deg, source=source)
    split = (d["train_features"], d["train_logits"], d["train_labels"], d["test_features"],
             d["test_logits"], d["test_labels"])
    out = {"skip_adapters": train_skip_adapters(*split, epochs=epochs, seed=seed)}
    for dist in ("gaussian", "uniform"):
        out[f"mezo_{dist}"] = train_mezo(*split, steps=steps, distribution=dist, seed=seed)
    for method in torch_methods:
        out[method] = train_torch(method, drift_deg, seed=seed)
    return out


def report(drift_deg=R1_DRIFT_DEG, *, seeds=(0, 1, 2), source="int8"):
    """The figures of docs/benchmarks.md ("Reference scenario R1 (float)") as rows
    ``(reference, setting, mean, std)``; ``mean`` is None (``std`` the reason) when not run.
    Run it as ``python -m fieldtune.sim.reference [--drift DEG] [--seeds N] [--source S]``."""
    d = r1_reference_data(drift_deg, source=source)
    split = {k: d[k] for k in ("train_features", "train_logits", "train_labels",
                               "test_features", "test_logits", "test_labels")}
    rows = [("backbone", f"{d['backbone']}, before drift (upright)",
             d["before_drift_accuracy"], 0.0),
            ("backbone", f"{d['backbone']}, after {drift_deg:g} deg drift",
             d["after_drift_accuracy"], 0.0)]
    runs = []
    for epochs in (10, 30):
        runs += [("skip adapters dense", f"{epochs} epochs, cache order", train_skip_adapters,
                  {"epochs": epochs}),
                 ("skip adapters dense", f"{epochs} epochs, shuffled", train_skip_adapters,
                  {"epochs": epochs, "shuffle": True}),
                 ("skip adapters rank 4", f"{epochs} epochs, cache order", train_skip_adapters,
                  {"epochs": epochs, "rank": 4})]
    for dist in ("gaussian", "uniform"):
        for steps in (2000, 5000):
            runs.append((f"MeZO {dist}", f"{steps} steps", train_mezo,
                         {"steps": steps, "distribution": dist}))
    for name, setting, fn, kwargs in runs:
        s = mean_over_seeds(fn, seeds=seeds, **split, **kwargs)
        rows.append((name, setting, s.mean, s.std))
    for method in TORCH_METHODS:
        s = mean_over_seeds(train_torch, seeds=seeds, method=method, drift_deg=drift_deg)
        rows.append((method, "10 epochs, Adam 1e-2", s.mean, s.std if s.mean is not None
                     else s.reason))
    return rows


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(prog="python -m fieldtune.sim.reference",
                                     description="R1 float reference accuracies")
    parser.add_argument("--drift", type=float, default=R1_DRIFT_DEG, help="rotation, degrees")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (at least 3)")
    parser.add_argument("--source", choices=("int8", "float"), default="int8",
                        help="features: dequantized int8 backbone (default) or float backbone")
    args = parser.parse_args()
    for name, setting, mean, std in report(args.drift, seeds=range(args.seeds),
                                           source=args.source):
        value = (f"{100 * mean:5.1f} % +- {100 * std:.1f}" if mean is not None else std)
        print(f"{name:22s} {setting:36s} {value}")

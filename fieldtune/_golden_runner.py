"""TEMPORARY stand-in for :mod:`fieldtune.sim.soc_run` until the SoC runner lands.

Implements only ``engine="golden"`` of the runner contract (docs: /work/notes/soc_api.md): the
bit-exact numpy models of the forward cache (:mod:`fieldtune.sim.golden.cache`), the
perturbation engine (:mod:`fieldtune.sim.golden.perturb`) and the MAC array with the loss unit
(:mod:`fieldtune.sim.golden.train`), chained the way the SoC chains them. It has no cycle model,
so ``cycles`` is ``None``. Remove this module once ``fieldtune.sim.soc_run`` exists.
"""

import time
from dataclasses import dataclass, field

import numpy as np

from .sim.golden.cache import CacheModel
from .sim.golden.perturb import vectors
from .sim.golden.train import train_fo, train_zo, evaluate, new_weights


__all__ = ["ENGINES", "RunResult", "run_finetune"]


ENGINES = ("golden",)
#: Perturbation vectors computed per call of the vectorized model.
_CHUNK = 250


@dataclass
class RunResult:
    mode: str
    engine: str
    accuracy: float
    train_accuracy: float
    curve: list
    loss_curve: list
    cycles: int | None
    eval_cycles: int | None
    weights: np.ndarray
    counters: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    sim_cycles_per_second: float | None = None


def _through_cache(cache_params, features, logits, labels):
    """Features as the dequantizer delivers them (records in cache order)."""
    model = CacheModel(cache_params)
    x = np.stack([model.dequantize(model.quantize(f)) for f in features])
    return {"x": x, "z0": np.asarray(logits, dtype=np.int64),
            "labels": np.asarray(labels, dtype=np.int64)}


def run_finetune(config, data, *, mode=None, engine="golden", epochs=None, steps=None,
                 eval_every=None, progress=None, vcd=None, env=None, max_cycles=None):
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))} until the "
                         f"SoC runner exists, not {engine!r}")
    train = config.train
    changes = {k: v for k, v in (("mode", mode), ("epochs", epochs), ("steps", steps))
               if v is not None}
    if changes:
        train = type(train)(**{**train.to_dict(), **changes})
    tr = _through_cache(config.cache, data["train_features"], data["train_logits"],
                        data["train_labels"])
    te = _through_cache(config.cache, data["test_features"], data["test_logits"],
                        data["test_labels"])
    mac, loss = config.mac, config.loss
    start = time.perf_counter()
    acc0 = evaluate(mac, new_weights(mac), te["x"], te["z0"], te["labels"])
    if train.mode == "fo":
        mem, curve, loss_curve = None, [(0, acc0)], []
        for epoch in range(1, train.epochs + 1):
            one = type(train)(**{**train.to_dict(), "epochs": 1})
            res = train_fo(mac, loss, one, tr, mem=mem, eval_data=te)
            mem = res.mem
            curve.append((epoch, res.history[-1]["test_acc"]))
            loss_curve.append((epoch, res.history[-1]["loss_bits"]))
            if progress:
                progress(epoch, train.epochs)
        counters = {"epochs": train.epochs, "samples": train.epochs * len(tr["labels"])}
    else:
        # train_zo starts every call at mini-batch 0, so a chunk must span whole passes.
        passes = max(1, -(-len(tr["labels"]) // train.batch))
        every = eval_every or passes * max(1, train.steps // (20 * passes))
        if every % passes:
            raise ValueError(f"eval_every must be a multiple of {passes} here, not {every}")
        cache = {}

        def perturbations(step):
            base = step - step % _CHUNK
            if base not in cache:
                cache.clear()
                cache[base] = vectors(config.perturb, train.seed,
                                      range(base, min(base + _CHUNK, train.steps))).beats
            return cache[base][step - base]

        mem, curve, done = None, [(0, acc0)], 0
        while done < train.steps:
            n = min(every, train.steps - done)
            part = type(train)(**{**train.to_dict(), "steps": n})
            res = train_zo(mac, loss, part, tr, lambda s, d=done: perturbations(d + s), mem=mem)
            mem, done = res.mem, done + n
            curve.append((done, evaluate(mac, mem, te["x"], te["z0"], te["labels"])))
            if progress:
                progress(done, train.steps)
        loss_curve = []
        counters = {"steps": train.steps}
    wall = time.perf_counter() - start
    train_acc = evaluate(mac, mem, tr["x"], tr["z0"], tr["labels"])
    return RunResult(train.mode, engine, curve[-1][1], train_acc, curve, loss_curve, None, None,
                     mem, counters, wall, None)

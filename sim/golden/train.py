"""Bit-exact whole adapter steps and fixed-point training loops (first and zeroth order).

A step here is exactly what the gateware does when a sequencer issues the micro-op program of
:func:`fo_program` / :func:`zo_program` (tests check both against each other and against the
gateware). Learning rate and perturbation scale are powers of two (``TrainParams``):

- first order: ``W <- W - 2**-lr_shift * mean_n dz_n (x) x_n`` over the mini-batch (the mean
  is a shift by log2(batch); a short last batch is still divided by ``batch``). All forwards
  of a batch use the batch-start weights; the outer products are then applied sample by
  sample (each rounded half up), which is mini-batch SGD up to those roundings.
- zeroth order (SPSA/MeZO, one query): ``epsilon = 2**-eps_shift``, the loss unit sums
  ``g = sum_n (L+_n - L-_n)`` (losses in bits, ``Q.loss_frac``) and
  ``W <- W - 2**-zo_lr_shift * g / (2 * epsilon * batch) * z``.
"""

from dataclasses import dataclass, field

import numpy as np

from ...rtl.params import TrainParams
from ...rtl.mac.params import MacParams
from ...rtl.loss.params import LossParams
from ...rtl.mac.layout import Layout
from ...rtl.mac.ops import (Op, Region, Operand, Perturb, Dest, CoefSource, mac_op)
from .fixed import saturate
from .loss import softmax_xent
from .mac import (matvec, update, init_region, colacc, coef_shift, colacc_shift, zshift_for,
                  z_operand_shift, stored_coefficients)


__all__ = ["new_weights", "with_frozen", "adapter_outputs", "forward", "evaluate", "fo_step",
           "zo_step", "zo_coef_shift", "fo_coef_shifts", "fo_program", "zo_program", "op_streams",
           "play", "TrainResult", "train_fo", "train_zo", "check_compatible"]


def check_compatible(mac: MacParams, loss: LossParams):
    """The MAC array and the loss unit must agree on classes and the logit format."""
    if (mac.classes, mac.feature_width, mac.feature_frac) != \
            (loss.classes, loss.logit_width, loss.logit_frac):
        raise ValueError("mac.classes/feature_width/feature_frac must equal loss.classes/"
                         "logit_width/logit_frac")
    if loss.prob_frac + 1 > mac.coef_width:
        raise ValueError(f"mac.coef_width must hold loss.prob_frac + 1 = {loss.prob_frac + 1} "
                         f"bits, not {mac.coef_width}")


def new_weights(mac: MacParams, z=None, eps_shift=3):
    """Untrained adapters: dense W = 0; low-rank B = 0 and A = ``z << zshift`` (``z``: the
    region's perturbation words, ``epsilon = 2**-eps_shift``), as INIT does."""
    lay = Layout(mac)
    mem = np.zeros((lay.words, mac.lanes), dtype=np.int64)
    if mac.adapter == "lowrank" and z is not None:
        init_region(mac, mem, 0, z[:lay.regions[0].words], zshift_for(mac, eps_shift))
    return mem


def _pad_inner(mac, u):
    lay = Layout(mac)
    out = np.zeros((u.shape[0], lay.local_beats * mac.lanes), dtype=np.int64)
    out[:, :u.shape[1]] = u
    return out


def with_frozen(mac: MacParams, y, z0):
    """The loss unit's input: ``sat(y + z0)``, adapter outputs plus frozen logits (the logit
    format equals the MAC array's result format, :func:`check_compatible`)."""
    return saturate(np.asarray(y, dtype=np.int64) + np.asarray(z0, dtype=np.int64),
                    mac.feature_width)


def adapter_outputs(mac: MacParams, mem, x, *, z=None, sign=0, zshift=0, flags=None):
    """The MAC array's results (n, C) for features ``x`` (n, N): ``W.x`` (dense) or
    ``B.u`` with ``u = A.x`` (low-rank); with ``z`` (words, lanes) the weights are perturbed
    by ``sign * (z << zshift)``."""
    x = np.atleast_2d(x)
    if mac.adapter == "dense":
        return matvec(mac, mem, 0, x, z=z, sign=sign, zshift=zshift, flags=flags)
    lay = Layout(mac)
    na = lay.regions[0].words
    za, zb = (z[:na], z[na:]) if z is not None else (None, None)
    u = matvec(mac, mem, 0, x, z=za, sign=sign, zshift=zshift, flags=flags)
    return matvec(mac, mem, 1, _pad_inner(mac, u), z=zb, sign=sign, zshift=zshift, flags=flags)


def forward(mac: MacParams, mem, x, z0, **kwargs):
    """Logits (n, C): adapter outputs plus frozen logits ``z0`` (n, C), as the loss unit sees
    them (keywords as :func:`adapter_outputs`)."""
    return with_frozen(mac, adapter_outputs(mac, mem, x, **kwargs), z0)


def evaluate(mac: MacParams, mem, x, z0, labels):
    """Accuracy (fraction of argmax == label) of the adapted model."""
    y = forward(mac, mem, x, z0)
    return float(np.mean(y.argmax(axis=1) == np.asarray(labels)))


def _log2(batch):
    if batch < 1 or batch & (batch - 1):
        raise ValueError(f"batch must be a power of two, not {batch}")
    return batch.bit_length() - 1


def fo_coef_shifts(mac: MacParams, loss: LossParams, lr_shift, batch):
    """``cshift`` of the first-order updates: dense/B (``dz`` times ``x`` or ``u``) and A
    (``v`` times ``x``), for ``eta = 2**-lr_shift`` on the mean over ``batch`` samples."""
    v_frac = loss.prob_frac + mac.weight_frac - colacc_shift(mac)
    lr = lr_shift + _log2(batch)
    return (coef_shift(mac, loss.prob_frac, mac.feature_frac, lr),
            coef_shift(mac, v_frac, mac.feature_frac, lr))


def zo_coef_shift(mac: MacParams, loss: LossParams, zo_lr_shift, eps_shift, batch, queries=1):
    """``cshift`` of the zeroth-order update: the loss-difference sum (``Q.loss_frac``) times
    ``z`` (entering the multiplier left-aligned), scaled by
    ``2**-zo_lr_shift / (2 * epsilon * batch * queries)`` (each query's update is its own
    sum's share of the step's mean; ``batch`` and ``queries`` are powers of two)."""
    return coef_shift(mac, loss.loss_frac, mac.perturb_frac + z_operand_shift(mac),
                      zo_lr_shift + _log2(batch) + _log2(queries) + 1 - eps_shift)


def fo_step(mac: MacParams, loss: LossParams, mem, x, z0, labels, lr_shift, batch=None, *,
            flags=None):
    """One first-order mini-batch step in place (``batch``: the nominal batch size, default
    the number of samples); returns the loss unit's results."""
    x, z0 = np.atleast_2d(x), np.atleast_2d(z0)
    cs, cs_a = fo_coef_shifts(mac, loss, lr_shift, batch or len(x))
    if mac.adapter == "dense":
        y = with_frozen(mac, matvec(mac, mem, 0, x, flags=flags), z0)
        r = softmax_xent(loss, y, labels)
        for n in range(len(x)):
            update(mac, mem, 0, r.dz[n], x[n], cs, flags=flags)
        return r
    u = _pad_inner(mac, matvec(mac, mem, 0, x, flags=flags))
    y = with_frozen(mac, matvec(mac, mem, 1, u, flags=flags), z0)
    r = softmax_xent(loss, y, labels)
    dz = stored_coefficients(mac, r.dz, cs, flags=flags)
    v = [colacc(mac, mem, dz[n], cs_a - cs, flags=flags) for n in range(len(x))]
    for n in range(len(x)):
        update(mac, mem, 1, dz[n], u[n], 0, flags=flags)
    for n in range(len(x)):
        update(mac, mem, 0, v[n], x[n], 0, flags=flags)
    return r


def zo_step(mac: MacParams, loss: LossParams, mem, x, z0, labels, z, zo_lr_shift, eps_shift,
            batch=None, *, flags=None):
    """One zeroth-order step (one query) in place with perturbation words ``z`` (words, lanes).
    Returns ``(g, loss_plus, loss_minus)``."""
    k = zshift_for(mac, eps_shift)
    lp = softmax_xent(loss, forward(mac, mem, x, z0, z=z, sign=1, zshift=k, flags=flags),
                      labels).loss
    lm = softmax_xent(loss, forward(mac, mem, x, z0, z=z, sign=-1, zshift=k, flags=flags),
                      labels).loss
    g = int(lp.sum() - lm.sum())
    cs = zo_coef_shift(mac, loss, zo_lr_shift, eps_shift, batch or len(x))
    zb = np.asarray(z, dtype=np.int64) << z_operand_shift(mac)
    for i, reg in enumerate(Layout(mac).regions):
        update(mac, mem, i, np.int64(g), zb[reg.base:reg.base + reg.words], cs, flags=flags)
    return g, lp, lm


# -- micro-op programs: what a sequencer issues --------------------------------------------

def fo_program(mac: MacParams, loss: LossParams, batch, lr_shift):
    """Micro-ops of one first-order step over ``batch`` samples, in issue order, each with the
    sample it works on: ``[(op, sample), ...]`` (see :func:`stream_plan` for what each
    streams). The loss unit turns each forward's ``out`` vector into ``dz`` on the ``coef``
    stream (sample order)."""
    lay = Layout(mac)
    cs, cs_a = fo_coef_shifts(mac, loss, lr_shift, batch)
    C = mac.classes
    # dz are stored scaled by the update's shift (BATCH); v by COLACC's (v = B^T dz_stored)
    prog = [(mac_op(Op.BATCH, cshift=cs), None)]
    if mac.adapter == "dense":
        for n in range(batch):
            prog.append((mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM), n))
        for n in range(batch):
            prog.append((mac_op(Op.UPDATE, Region.W, operand=Operand.STREAM,
                                coef_base=n * C), n))
        return prog
    inner = lay.inner
    for n in range(batch):
        prog.append((mac_op(Op.MATVEC, Region.A, operand=Operand.STREAM, dest=Dest.LOCAL), n))
        prog.append((mac_op(Op.MATVEC, Region.B, operand=Operand.LOCAL), n))
    for n in range(batch):
        prog.append((mac_op(Op.COLACC, Region.B, coef_base=n * C, cshift=cs_a - cs,
                            v_base=lay.v_base + n * inner), n))
    for n in range(batch):
        prog.append((mac_op(Op.MATVEC, Region.A, operand=Operand.STREAM, dest=Dest.LOCAL), n))
        prog.append((mac_op(Op.UPDATE, Region.B, operand=Operand.LOCAL, coef_base=n * C), n))
    for n in range(batch):
        prog.append((mac_op(Op.UPDATE, Region.A, operand=Operand.STREAM,
                            coef_base=lay.v_base + n * inner), n))
    return prog


def zo_program(mac: MacParams, loss: LossParams, batch, g, zo_lr_shift, eps_shift):
    """Micro-ops of one zeroth-order step: the perturbed forwards (``+`` then ``-`` per
    sample, each consuming one replay of ``z``), then the update with the loss-difference sum
    ``g`` (from the loss unit) as immediate coefficient (one more replay of ``z``)."""
    k = zshift_for(mac, eps_shift)
    cs = zo_coef_shift(mac, loss, zo_lr_shift, eps_shift, batch)
    prog = []
    for n in range(batch):
        for sign in (Perturb.PLUS, Perturb.MINUS):
            if mac.adapter == "dense":
                prog.append((mac_op(Op.MATVEC, Region.W, operand=Operand.STREAM, perturb=sign,
                                    zshift=k), n))
            else:
                prog.append((mac_op(Op.MATVEC, Region.A, operand=Operand.STREAM, perturb=sign,
                                    zshift=k, dest=Dest.LOCAL), n))
                prog.append((mac_op(Op.MATVEC, Region.B, operand=Operand.LOCAL, perturb=sign,
                                    zshift=k), n))
    for i, _ in enumerate(Layout(mac).regions):
        prog.append((mac_op(Op.UPDATE, Region(i), operand=Operand.Z,
                            coef_source=CoefSource.IMM, imm=g, cshift=cs), None))
    return prog


def op_streams(mac: MacParams, op, sample, x, z=None):
    """What ``op`` on ``sample`` consumes: ``{"x": [(beat, last)], "z": [beats]}`` (``x``
    (n, N) features, ``z`` (words, lanes) perturbation words)."""
    lay = Layout(mac)
    out = {"x": [], "z": []}
    if int(op["region"].value) >= len(lay.regions):
        return out                                  # rejected by the array
    reg = lay.regions[int(op["region"].value)]
    kind = op["op"]
    if op["operand"] == Operand.STREAM and kind in (Op.MATVEC, Op.UPDATE):
        beats = np.asarray(x[sample], dtype=np.int64).reshape(-1, mac.lanes)
        out["x"] = [(b, k == len(beats) - 1) for k, b in enumerate(beats)]
    uses_z = ((kind == Op.MATVEC and op["perturb"] != Perturb.NONE)
              or (kind in (Op.UPDATE, Op.INIT) and op["operand"] == Operand.Z))
    if uses_z:
        out["z"] = list(np.asarray(z, dtype=np.int64)[reg.base:reg.base + reg.words])
    return out


def play(model, loss: LossParams, prog, x, z0, labels, z=None, *, zo=False):
    """Run ``prog`` on a :class:`~.mac.MacModel` with a loss unit between ``out`` and
    ``coef`` (the way a sequencer wires them): every ``out`` vector, plus its sample's frozen
    logits, goes through the loss unit; first order pushes its ``dz`` into the coefficient
    memory. Returns the loss unit's results per vector (dicts ``loss``, ``argmax``, ``correct``)."""
    results = []
    for op, sample in prog:
        s = op_streams(model.mac, op, sample, x, z)
        model.x.extend(s["x"])
        model.z.extend(s["z"])
        y = model.run(op)
        if op["op"] == Op.MATVEC and op["dest"] == Dest.OUT:
            r = softmax_xent(loss, with_frozen(model.mac, y, z0[sample])[None],
                             [labels[sample]])
            results.append({"loss": int(r.loss[0]), "argmax": int(r.argmax[0]),
                            "correct": bool(r.correct[0])})
            if not zo:
                model.push_coef(r.dz[0])
    return results


# -- training loops ------------------------------------------------------------------------

@dataclass
class TrainResult:
    mem: np.ndarray
    history: list = field(default_factory=list)   # dicts per epoch (FO) or per eval (ZO)
    flags: dict = field(default_factory=dict)


def _batches(n, batch):
    for s in range(0, n, batch):
        yield slice(s, min(s + batch, n))


def train_fo(mac: MacParams, loss: LossParams, train: TrainParams, data, *, mem=None,
             eval_data=None):
    """First-order training for ``train.epochs`` epochs over ``data`` (dict with ``x``, ``z0``,
    ``labels``; integer arrays) in order, mini-batches of ``train.batch``."""
    check_compatible(mac, loss)
    mem = new_weights(mac) if mem is None else mem.copy()
    flags = {"saturated": False}
    res = TrainResult(mem, flags=flags)
    for epoch in range(train.epochs):
        losses, correct = [], 0
        for sl in _batches(len(data["labels"]), train.batch):
            r = fo_step(mac, loss, mem, data["x"][sl], data["z0"][sl], data["labels"][sl],
                        train.lr_shift, train.batch, flags=flags)
            losses.append(r.loss)
            correct += int(r.correct.sum())
        entry = {"epoch": epoch + 1, "loss_bits": float(np.concatenate(losses).mean()
                                                        / (1 << loss.loss_frac)),
                 "train_acc": correct / len(data["labels"])}
        if eval_data is not None:
            entry["test_acc"] = evaluate(mac, mem, eval_data["x"], eval_data["z0"],
                                         eval_data["labels"])
        res.history.append(entry)
    return res


def train_zo(mac: MacParams, loss: LossParams, train: TrainParams, data, perturbations, *,
             mem=None, eval_data=None, eval_every=0):
    """Zeroth-order training for ``train.steps`` steps; step ``s`` uses mini-batch
    ``s mod (samples / batch)`` (in order) and ``perturbations(s)`` -> (words, lanes) ints."""
    check_compatible(mac, loss)
    mem = new_weights(mac) if mem is None else mem.copy()
    flags = {"saturated": False}
    res = TrainResult(mem, flags=flags)
    slices = list(_batches(len(data["labels"]), train.batch))
    for s in range(train.steps):
        sl = slices[s % len(slices)]
        z = perturbations(s)
        g, lp, lm = zo_step(mac, loss, mem, data["x"][sl], data["z0"][sl], data["labels"][sl],
                            z, train.zo_lr_shift, train.eps_shift, train.batch, flags=flags)
        if eval_data is not None and eval_every and (s + 1) % eval_every == 0:
            res.history.append({"step": s + 1, "g": g,
                                "test_acc": evaluate(mac, mem, eval_data["x"], eval_data["z0"],
                                                     eval_data["labels"])})
    return res

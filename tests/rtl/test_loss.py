# amaranth: UnusedElaboratable=no
"""The loss unit against its golden model, bit for bit (dz, loss, argmax, zeroth-order sum),
under back-pressure; and the golden model's error against float."""

import numpy as np
import pytest

from fieldtune.rtl.loss import SoftmaxCrossEntropy, ZOSign, LossParams
from fieldtune.sim.golden.loss import (softmax_xent, float_softmax_xent, with_frozen,
                                       exponents, exp2_neg, log2_sum)
from fieldtune.sim.golden.fixed import round_shift
from fieldtune.sim.engines.pysim import (simulate, stream_send, stream_collect,
                                         loss_command_benches)


def _vectors(p, rng, n):
    """Adapter outputs, frozen logits and labels, with corners: ties, the largest gap, and
    sums that saturate."""
    lo, hi = -(1 << (p.logit_width - 1)), (1 << (p.logit_width - 1)) - 1
    y = rng.integers(-6 << p.logit_frac, 6 << p.logit_frac, (n, p.classes))
    z0 = rng.integers(-3 << p.logit_frac, 3 << p.logit_frac, (n, p.classes))
    y[0], z0[0] = 0, 0                          # all equal: ties go to the first class
    y[1], z0[1] = lo, -1
    y[1, 3 % p.classes] = hi                    # the largest gap: clamped differences
    y[2, :2], z0[2, :2] = hi, (5, 1)            # tied (saturated) maxima at the top
    labels = rng.integers(0, p.classes, n)
    y[3, 1], labels[3] = hi, 0                  # probability 1.0 off the label: dz saturates
    return y, z0, labels


def _run(p, z, cmds, *, ready=None, z0_valid=None):
    dut = SoftmaxCrossEntropy(p)
    n = len(z)
    dz_count = sum(c["dz"] for c in cmds) * p.classes
    got = {}

    async def logits(ctx):
        await stream_send(ctx, dut.logits, [int(v) for v in z.reshape(-1)],
                          valid=lambda c: c % 5 != 3)

    async def dz(ctx):
        got["dz"], _ = await stream_collect(ctx, dut.dz, dz_count, ready=ready,
                                            max_cycles=200 * n * p.classes)

    async def results(ctx):
        got["res"], got["cycles"] = await stream_collect(
            ctx, dut.result, n, ready=ready, max_cycles=200 * n * p.classes,
            convert=lambda r: (r.loss, r.argmax, r.correct, r.zo_sum))

    simulate(dut, *loss_command_benches(dut, cmds, z0_valid=z0_valid), logits, dz, results,
             name="loss")
    return got


@pytest.mark.parametrize("p", [LossParams(), LossParams(serial=False),
                               LossParams(classes=3, logit_width=12, logit_frac=6,
                                          prob_frac=12, exp_bits=6, loss_frac=10),
                               LossParams(classes=3, logit_width=16, logit_frac=10,
                                          prob_frac=12, exp_bits=6, loss_frac=8)],
                         ids=["default", "parallel", "small", "long-shift"])
def test_loss_unit_matches_golden_under_backpressure(p):
    rng = np.random.default_rng(p.classes)
    y, z0, labels = _vectors(p, rng, 7)
    zo = [ZOSign.NONE, ZOSign.PLUS, ZOSign.MINUS, ZOSign.PLUS, ZOSign.MINUS, ZOSign.PLUS,
          ZOSign.NONE]
    cmds = [{"z0": [int(v) for v in z0[i]], "label": int(labels[i]), "dz": int(i % 3 != 1),
             "zo": zo[i], "zo_first": int(i in (1, 5))} for i in range(7)]
    got = _run(p, y, cmds, ready=lambda c: c % 4 != 1, z0_valid=lambda c: c % 7 != 2)
    ref = softmax_xent(p, with_frozen(p, y, z0), labels)
    want_dz = [int(v) for i in range(7) if cmds[i]["dz"] for v in ref.dz[i]]
    assert [int(v) for v in got["dz"]] == want_dz
    zo_sum, want = 0, []
    for i in range(7):
        sign = {ZOSign.PLUS: 1, ZOSign.MINUS: -1, ZOSign.NONE: 0}[zo[i]]
        if sign:
            zo_sum = (0 if cmds[i]["zo_first"] else zo_sum) + sign * int(ref.loss[i])
        want.append((int(ref.loss[i]), int(ref.argmax[i]), int(ref.correct[i]), zo_sum))
    assert [tuple(int(v) for v in r) for r in got["res"]] == want


def _shifts(p, logits):
    """The serial unit's stage-4 shifts of one vector (``latency``'s ``shifts``): the first
    pass's last class's and the second pass's per class, from the golden model's exponents."""
    if not p.serial:
        return (0, ())
    t, _ = exponents(p, np.atleast_2d(logits))
    l2s = log2_sum(p, exp2_neg(p, t).sum(axis=-1))

    def shifts(x):
        n = round_shift(x, p.loss_frac - p.exp_bits) >> p.exp_bits
        return np.where(n >= p.prob_frac + 2, 0, n % 16)
    return int(shifts(t[0, -1])), tuple(int(n) for n in shifts(t[0] + l2s[0]))


@pytest.mark.parametrize("serial", [False, True])
def test_loss_unit_throughput(serial):
    p = LossParams(serial=serial)
    rng = np.random.default_rng(5)
    y, z0, labels = _vectors(p, rng, 4)
    cmds = [{"z0": [int(v) for v in z0[i]], "label": int(labels[i]), "dz": 1,
             "zo": ZOSign.NONE, "zo_first": 0} for i in range(4)]
    got = _run(p, y, cmds)
    # documented: about latency() cycles per vector (the logit source stalls 1 in 5)
    logits = with_frozen(p, y, z0)
    assert got["cycles"] <= sum(SoftmaxCrossEntropy.latency(p, shifts=_shifts(p, logits[i]))
                                + p.classes // 4 + 2 for i in range(4))


@pytest.mark.parametrize("dz,serial,row,documented", [
    (1, False, 3, 43), (0, False, 3, 43), (1, True, 3, 359), (0, True, 3, 195),
    (1, True, 4, 359 + 2 + 3), (0, True, 4, 195 + 2)])
def test_loss_unit_latency(dz, serial, row, documented):
    """One vector, logits back to back, outputs always ready: the result transfers on edge
    ``latency`` counted from the first logit's (parallel: dz or not, the second pass takes
    the loss); at 10 classes 3 * 10 + 13 cycles; serial without dz 195 plus the first
    pass's last shifts, with dz 164 more plus the second pass's last class's shifts and
    those of its other classes past 13 (``_shifts``: none for row 3, whose other classes'
    probabilities are 0; 2 and 3 for row 4, none past 13)."""
    p = LossParams(serial=serial)
    rng = np.random.default_rng(9)
    y, z0, labels = (a[row:row + 1] for a in _vectors(p, rng, 5))
    dut = SoftmaxCrossEntropy(p)
    cmd = {"z0": [int(v) for v in z0[0]], "label": int(labels[0]), "dz": dz,
           "zo": ZOSign.MINUS, "zo_first": 1}
    got = {}

    async def logits(ctx):
        await stream_send(ctx, dut.logits, [int(v) for v in y[0]])

    async def dz_values(ctx):
        got["dz"], _ = await stream_collect(ctx, dut.dz, p.classes * dz)

    async def results(ctx):
        got["res"], got["cycles"] = await stream_collect(ctx, dut.result, 1)

    simulate(dut, *loss_command_benches(dut, [cmd]), logits, dz_values, results,
             name="loss_latency")
    shifts = _shifts(p, with_frozen(p, y, z0)[0])
    assert got["cycles"] == SoftmaxCrossEntropy.latency(p, dz=dz, shifts=shifts)
    last, second = shifts
    assert SoftmaxCrossEntropy.latency(p, dz=dz) + last + (second[-1] if dz and second else 0) \
        == documented
    ref = softmax_xent(p, with_frozen(p, y, z0), labels)
    assert int(got["res"][0].zo_sum) == -int(ref.loss[0])


def test_error_against_float_is_small():
    p = LossParams()
    rng = np.random.default_rng(0)
    z = rng.integers(-8 << p.logit_frac, 8 << p.logit_frac, (5000, p.classes))
    y = rng.integers(0, p.classes, 5000)
    r = softmax_xent(p, z, y)
    dzf, lf = float_softmax_xent(p, z, y)
    # documented in docs/numerics.md: |dz error| < 0.0035, |loss error| < 0.005 bits
    assert np.abs(r.dz / (1 << p.prob_frac) - dzf).max() < 0.0035
    assert np.abs(r.loss / (1 << p.loss_frac) - lf).max() < 0.005


def test_rejects_wrong_params():
    with pytest.raises(TypeError, match="params must be a LossParams, not dict"):
        SoftmaxCrossEntropy({})
    with pytest.raises(ValueError, match=r"^loss.prob_frac must be an integer from 8 to 15, "
                                         r"not 16$"):
        LossParams(prob_frac=16)
    with pytest.raises(ValueError, match=r"^loss.loss_frac must be an integer from 8 to 16, "
                                         r"not 7$"):
        LossParams(loss_frac=7)

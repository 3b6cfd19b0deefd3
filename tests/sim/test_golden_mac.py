"""The MAC array's golden model: memory map, vectorized ops against plain loops, the micro-op
interpreter against the vectorized steps, and the parameter rules."""

import numpy as np
import pytest

from fieldtune.rtl.mac.params import MacParams
from fieldtune.rtl.mac.layout import Layout
from fieldtune.rtl.mac.ops import Op, Region, mac_op
from fieldtune.rtl.loss.params import LossParams
from fieldtune.sim.golden import mac as gm
from fieldtune.sim.golden.train import (fo_step, zo_step, fo_program, zo_program, play,
                                        new_weights)


def _rand(rng, shape, width):
    return rng.integers(-(1 << (width - 1)), 1 << (width - 1), shape)


def test_dense_layout_and_matrix_round_trip():
    mac = MacParams(lanes=4, taps=(8, 4), classes=3)
    lay = Layout(mac)
    assert lay.words == 3 * 3 and lay.dimension == 36 == lay.trained_weights
    mem = np.arange(36).reshape(9, 4)
    w = gm.region_matrix(mac, mem, 0)
    # word k*classes + c holds W[c, k*L:(k+1)*L]
    assert list(w[2, 4:8]) == list(mem[1 * 3 + 2])
    back = gm.set_region_matrix(mac, np.zeros_like(mem), 0, w)
    assert np.array_equal(back, mem)


def test_lowrank_layout_groups_and_padding():
    mac = MacParams(lanes=4, taps=(8, 4), classes=3, adapter="lowrank", rank=3)
    lay = Layout(mac)
    a, b = lay.regions
    assert (a.beats, a.rows, a.groups, a.outputs) == (3, 3, ((0, 2), (2, 1)), 6)
    assert (b.base, b.beats, b.rows, b.padded_lanes) == (9, 2, 3, 2)
    assert lay.dimension == (9 + 6) * 4 and lay.trained_weights == lay.dimension - 2 * 3
    m = gm.region_matrix(mac, np.ones((a.words, 4), dtype=np.int64), 0)
    # block diagonal: tap 0 rows see features 0..7 only, tap 1 rows features 8..11
    assert m[:3, 8:].sum() == 0 and m[3:, :8].sum() == 0 and m[:3, :8].all()


def test_matvec_rounds_half_up_and_saturates():
    mac = MacParams(lanes=2, taps=(2,), classes=2, feature_width=8, feature_frac=4,
                    weight_width=8, weight_frac=4, acc_width=24, perturb_frac=3)
    mem = np.array([[8, 0], [1, 0]])            # W[0] = [0.5, 0], W[1] = [1/16, 0]
    flags = {"saturated": False}
    # x = 1/16: products 8/256 = 0.5 LSB -> rounds up to 1 LSB; 1/256 -> 0
    y = gm.matvec(mac, mem, 0, [[1, 0]], flags=flags)
    assert list(y[0]) == [1, 0] and not flags["saturated"]
    y = gm.matvec(mac, mem, 0, [[-1, 0]], flags=flags)    # -0.5 LSB rounds up to 0
    assert list(y[0]) == [0, 0]
    big = np.array([[127, 127], [-128, -128]])
    y = gm.matvec(mac, big, 0, [[127, 127]], flags=flags)
    assert list(y[0]) == [127, -128] and flags["saturated"]


def test_update_matches_loop_and_saturates():
    rng = np.random.default_rng(1)
    mac = MacParams(lanes=4, taps=(8,), classes=3)
    mem = _rand(rng, (6, 4), 16)
    mem[0, 0] = 32767
    b = _rand(rng, 8, 16)
    coefs = _rand(rng, 3, 16)
    coefs[0] = -32768
    ref = mem.copy()
    S = gm.update_shift(mac)
    for k in range(2):
        for r in range(3):
            for l in range(4):
                a = max(min(coefs[r] * 2, 32767), -32768)
                d = (a * b[k * 4 + l] + (1 << (S - 1))) >> S
                ref[k * 3 + r, l] = max(min(ref[k * 3 + r, l] - d, 32767), -32768)
    flags = {"saturated": False}
    gm.update(mac, mem, 0, coefs, b, 1, flags=flags)
    assert np.array_equal(mem, ref) and flags["saturated"]


def test_coefficient_scaling_rounds_half_up():
    mac = MacParams(lanes=1, taps=(1,), classes=2, acc_width=40)
    mem = np.zeros((2, 1), dtype=np.int64)
    S = gm.update_shift(mac)
    # a = round(3 / 2) = 2 and round(-3 / 2) = -1 (half up); b = 2**(S-1): delta = a / 2,
    # itself rounded half up: 1 and round(-1/2) = 0
    gm.update(mac, mem, 0, [3, -3], [1 << (S - 1)], -1)
    assert list(mem[:, 0]) == [-1, 0]


@pytest.mark.parametrize("adapter", ["dense", "lowrank"])
def test_interpreter_plays_steps_like_the_vectorized_model(adapter):
    rng = np.random.default_rng(2)
    mac = MacParams(lanes=4, taps=(8, 4), classes=3, adapter=adapter, rank=2, max_batch=4)
    loss = LossParams(classes=3)
    lay = Layout(mac)
    x = rng.integers(0, 600, (4, 12))
    z0 = _rand(rng, (4, 3), 11)
    labels = rng.integers(0, 3, 4)
    z = _rand(rng, (lay.words, 4), 8)
    mem = new_weights(mac, z, eps_shift=2)
    gm.update(mac, mem, len(lay.regions) - 1, 0, _rand(rng, (lay.regions[-1].words, 4), 16),
              -6)  # B (or W) != 0, so the step moves everything
    model = gm.MacModel(mac)
    model.mem[:] = mem
    play(model, loss, fo_program(mac, loss, 4, 4), x, z0, labels)
    ref = mem.copy()
    fo_step(mac, loss, ref, x, z0, labels, 4)
    assert np.array_equal(model.mem, ref) and not model.flags["error"]
    # zeroth order: forwards, then the update with the loss unit's sum
    prog = zo_program(mac, loss, 4, 0, 11, 4)
    results = play(model, loss, prog[:-len(lay.regions)], x, z0, labels, z, zo=True)
    g = sum(r["loss"] * (1 if i % 2 == 0 else -1) for i, r in enumerate(results))
    play(model, loss, zo_program(mac, loss, 4, g, 11, 4)[-len(lay.regions):], x, z0, labels, z)
    g_ref, _, _ = zo_step(mac, loss, ref, x, z0, labels, z, 11, 4)
    assert g == g_ref and np.array_equal(model.mem, ref)
    assert not model.flags["framing"] and not model.flags["error"]


def test_interpreter_rejects_bad_ops_with_a_flag():
    mac = MacParams(lanes=4, taps=(8,), classes=3)
    model = gm.MacModel(mac)
    assert model.run(mac_op(Op.MATVEC, Region.B)) == [] and model.flags["error"]
    model.flags["error"] = False
    model.run(mac_op(Op.UPDATE, coef_base=Layout(mac).coef_depth - 1))
    assert model.flags["error"]
    with pytest.raises(gm.MacError, match="eps_shift must be from 0 to 7"):
        gm.zshift_for(mac, 8)


@pytest.mark.parametrize("changes,message", [
    ({"taps": (12, 8), "lanes": 8}, "mac.taps must add up to a multiple of mac.lanes (8), not 20"),
    ({"taps": (16, 12), "lanes": 4, "adapter": "lowrank"}, None),
    ({"taps": (16, 12), "lanes": 8, "adapter": "lowrank"},
     "mac.taps[1] must be a multiple of mac.lanes (8) for low-rank adapters, not 12"),
    ({"max_batch": 0}, "mac.max_batch must be an integer from 1 to 256, not 0"),
    ({"perturb_frac": 7, "perturb_width": 8}, "mac.perturb_frac must be an integer from 0 to 6, "
                                               "not 7"),
    ({"coef_width": 20}, "mac.coef_width must be an integer from 8 to 18, not 20"),
    ({"read_register": 1}, "mac.read_register must be true or false, not 1"),
    ({"weight_frac": 4}, "mac.perturb_frac must be at most mac.weight_frac (4), not 5"),
])
def test_mac_params_messages(changes, message):
    if message is None:
        MacParams(**changes)
        return
    with pytest.raises(ValueError) as info:
        MacParams(**changes)
    assert str(info.value) == message

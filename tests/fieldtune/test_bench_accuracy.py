"""``fieldtune bench accuracy``: its report's shape, its statistics recomputed from the per-start
rows, and its device figures against the SoC's golden session (``run_finetune``)."""

import json
from dataclasses import replace as dc_replace

import numpy as np
import pytest

from fieldtune.bench.accuracy import recommend, start_codes, SEED
from fieldtune.boards.table import board
from fieldtune.cli import main
from fieldtune.config import DesignConfig
from fieldtune.finetune import float_first_order
from fieldtune.host import session as soc_session
from fieldtune.sim.golden.mac import set_region_matrix
from fieldtune.sim.golden.schedule import RUNS, train_fo_scheduled
from fieldtune.sim.golden.train import evaluate, new_weights
from fieldtune.sim.reference import r1_reference_data, train_skip_adapters
from fieldtune.sim.scenario import r1_features
from fieldtune.sim.soc_data import cached_view, estimate_cycles, records_of


DRIFT, EPOCHS, STARTS = 30, 1, 3


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "accuracy.json"
    assert main(["bench", "accuracy", "--starts", str(STARTS), "--drifts", str(DRIFT),
                 "--epochs", str(EPOCHS), "--codebooks", "unf4,pass16", "--runs", "plain",
                 "--baselines", "float", "--json", str(path)]) == 0
    return json.loads(path.read_text())


def test_report_shape(report):
    assert report["bench"] == "accuracy"
    assert [r["method"] for r in report["rows"]] == ["float", "unf4", "pass16"]
    assert {r["drift_deg"] for r in report["rows"]} == {DRIFT}
    unf4 = report["rows"][1]
    for key in ("mean_pct", "sd_pct", "gap_float", "gap_float_se", "gap_ref", "gap_ref_se",
                "default_pct", "default_gap_float", "default_gap_ref", "fo_met",
                "fo_met_default", "cache_met", "cache_met_default", "saturated_runs"):
        assert key in unf4, key
    assert "gap_ref" not in report["rows"][2]          # pass16 is the reference itself
    c = report["conditions"]
    assert (c["starts"], c["seed"], c["epochs"], c["batch"], c["lr"]) == (
        STARTS, SEED, EPOCHS, 16, 2.0 ** -4)
    starts = report["starts"]
    assert [(s["start"], s["seed"]) for s in starts] == [(i, SEED + i) for i in range(STARTS)]
    for s in starts:
        assert {"float_pct", "unf4_pct", "pass16_pct", "saturated"} <= set(s)


def test_statistics_follow_from_the_starts(report):
    starts = report["starts"]
    col = {m: np.array([s[f"{m}_pct"] for s in starts]) for m in ("float", "unf4", "pass16")}
    rows = {r["method"]: r for r in report["rows"]}
    for m, values in col.items():
        assert rows[m]["mean_pct"] == pytest.approx(values.mean())
        assert rows[m]["sd_pct"] == pytest.approx(values.std(ddof=1))
    d = col["unf4"] - col["float"]
    assert rows["unf4"]["gap_float"] == pytest.approx(col["unf4"].mean() - col["float"].mean())
    assert rows["unf4"]["gap_float_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(STARTS))
    assert rows["unf4"]["gap_ref"] == pytest.approx(col["unf4"].mean() - col["pass16"].mean())
    assert rows["unf4"]["fo_met"] == (rows["unf4"]["gap_float"] >= -1.0)
    assert rows["unf4"]["cache_met"] == (rows["unf4"]["gap_ref"] >= -0.5)
    assert rows["unf4"]["default_gap_float"] == pytest.approx(
        rows["unf4"]["default_pct"] - rows["float"]["default_pct"])


def _golden_session(codes=None):
    """The SoC's golden session (run_finetune, engine "golden") of unf4 at 30°, one epoch,
    from start weights ``codes`` (weight LSBs) or from the runner's own zero start."""
    config = DesignConfig().replace(train={"epochs": EPOCHS})
    if codes is None:
        return soc_session.run_finetune(config, r1_features(DRIFT), mode="fo", engine="golden")
    mem = set_region_matrix(config.mac, new_weights(config.mac), 0, codes)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(soc_session, "initial_weights", lambda cfg, seed: mem.copy())
        return soc_session.run_finetune(config, r1_features(DRIFT), mode="fo", engine="golden")


def test_device_figures_match_the_golden_session(report):
    start = report["starts"][1]
    codes = start_codes((10, 224), start["seed"])
    assert np.count_nonzero(codes) > 1000               # a real start, not zero
    assert start["unf4_pct"] == pytest.approx(100 * _golden_session(codes).accuracy)
    unf4 = report["rows"][1]
    assert unf4["default_pct"] == pytest.approx(100 * _golden_session().accuracy)


def test_float_figures_start_where_the_device_starts(report):
    config = DesignConfig().replace(train={"epochs": EPOCHS})
    ref = r1_reference_data(DRIFT)
    float_row = report["rows"][0]
    assert float_row["default_pct"] == pytest.approx(
        100 * float_first_order(ref, config.train).accuracy)
    start = report["starts"][0]
    w0 = start_codes((10, 224), start["seed"]) * 2.0 ** -config.mac.weight_frac
    from_start = 100 * float_first_order(ref, config.train, w0=w0).accuracy
    assert start["float_pct"] == pytest.approx(from_start)


def test_float_start_weights_are_checked():
    ref = r1_reference_data(DRIFT)
    split = (ref["train_features"], ref["train_logits"], ref["train_labels"],
             ref["test_features"], ref["test_logits"], ref["test_labels"])
    with pytest.raises(ValueError, match=r"w0 must have shape \(10, 224\), not \(10, 3\)"):
        train_skip_adapters(*split, epochs=1, w0=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="w0 .start weights. is for the dense adapter"):
        train_skip_adapters(*split, epochs=1, rank=4, w0=np.zeros((10, 224)))


def test_scheduled_runs_and_their_projected_time(tmp_path):
    path = tmp_path / "accuracy.json"
    assert main(["bench", "accuracy", "--starts", "2", "--drifts", str(DRIFT),
                 "--codebooks", "unf4", "--runs", "plain,shuffle10", "--baselines", "float",
                 "--epochs", "1", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    rows = {r["method"]: r for r in doc["rows"]}
    assert list(rows) == ["float", "unf4", "unf4/shuffle10"]
    start = doc["starts"][1]
    config = DesignConfig()
    train, test = (cached_view(config, *records_of(r1_features(DRIFT), s))
                   for s in ("train", "test"))
    codes = start_codes((10, 224), start["seed"])
    mem = set_region_matrix(config.mac, new_weights(config.mac), 0, codes)
    run = RUNS["shuffle10"]
    r = train_fo_scheduled(config.mac, config.loss, dc_replace(config.train, epochs=run.epochs),
                           dc_replace(run.schedule, order_seed=start["seed"]),
                           dict(zip(("x", "z0", "labels"), train)), mem=mem)
    assert start["unf4/shuffle10_pct"] == pytest.approx(100 * evaluate(config.mac, r.mem, *test))
    assert start["unf4/shuffle10_epochs"] == 10 and start["unf4_epochs"] == 1
    # projected time: the board preset's estimated cycles over its SoC clock (board table)
    hz = board("icebreaker").soc_mhz * 1e6
    up5k = DesignConfig.preset("up5k")
    cycles = estimate_cycles(up5k, "fo", 256, epochs=10, batch=16)
    assert rows["unf4/shuffle10"]["icebreaker_s"] == pytest.approx(cycles / hz)
    assert rows["unf4/shuffle10"]["icebreaker_met"] == (cycles / hz <= 0.15)
    assert rows["unf4"]["icebreaker_s"] == pytest.approx(
        estimate_cycles(up5k, "fo", 256, epochs=1, batch=16) / hz)
    assert rows["unf4"]["run"] == "plain" and "gap_lora" not in rows["unf4"]


def test_lora_all_baseline_pairs_by_start(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "accuracy.json"
    assert main(["bench", "accuracy", "--starts", "2", "--drifts", str(DRIFT),
                 "--codebooks", "unf4", "--runs", "plain", "--baselines", "lora_all",
                 "--baseline-epochs", "1", "--epochs", "1", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    rows = {r["method"]: r for r in doc["rows"]}
    lora = np.array([s["lora_all_pct"] for s in doc["starts"]])
    unf4 = np.array([s["unf4_pct"] for s in doc["starts"]])
    assert rows["lora_all"]["mean_pct"] == pytest.approx(lora.mean())
    assert rows["unf4"]["gap_lora"] == pytest.approx((unf4 - lora).mean())
    assert rows["unf4"]["lora_met"] == (rows["unf4"]["gap_lora"] >= -1.0)
    assert all(s["lora_all_cpu_s"] > 0 for s in doc["starts"])


@pytest.mark.parametrize("argv, message", [
    (["--starts", "1"], "--starts must be an integer from 2 to 1000, not 1"),
    (["--runs", "plain,fast"], "--runs must list names from plain, "),
    (["--baselines", "float,sgd"], "--baselines must list names from float, ft_all, "),
    (["--runs", "plain,plain"], "--runs must list distinct names, not 'plain,plain'"),
    (["--drifts", "30,x"], "--drifts must list angles in degrees, not 'x'"),
    (["--codebooks", "unf5"], "cache.codebook must be one of"),
])
def test_bad_arguments_are_reported(argv, message, capsys):
    assert main(["bench", "accuracy", *argv]) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def _row(run, drift, mean, ms, lora_met=True):
    return {"codebook": "unf4", "run": run, "drift_deg": drift, "mean_pct": mean,
            "icebreaker_s": ms / 1e3, "icebreaker_met": ms <= 150, "lora_met": lora_met}


def test_recommend_takes_the_most_points_per_second_among_runs_meeting_the_targets():
    rows = [_row("plain", 30, 86, 48, False), _row("plain", 45, 70, 48, False),
            _row("a", 30, 90, 96), _row("a", 45, 88, 96),          # +11 points in 96 ms
            _row("b", 30, 91, 144), _row("b", 45, 89, 144),        # +12 points in 144 ms
            _row("c", 30, 95, 200), _row("c", 45, 95, 200),        # too slow
            _row("d", 30, 90, 60), _row("d", 45, 80, 60, False)]   # misses LoRA-All at 45
    best = recommend(rows, "unf4")
    assert best["run"] == "a"
    assert best["gain_pct"] == pytest.approx(11.0)
    assert best["points_per_s"] == pytest.approx(11.0 / 0.096)
    assert recommend(rows[2:], "unf4") is None                     # no plain run
    assert recommend(rows[:2], "unf4") is None                     # nothing qualifies


def test_zeroth_order_rows(tmp_path):
    path = tmp_path / "accuracy.json"
    assert main(["bench", "accuracy", "--starts", "2", "--drifts", str(DRIFT), "--epochs", "1",
                 "--codebooks", "unf4", "--runs", "plain", "--baselines", "float",
                 "--zo-seeds", "1", "--json", str(path)]) == 0
    doc = json.loads(path.read_text())
    (run,) = doc["zo_runs"]
    rows = {r["method"]: r for r in doc["rows"]}
    assert (run["drift_deg"], run["seed"]) == (DRIFT, 1)
    assert rows["zo"]["mean_pct"] == pytest.approx(run["zo_pct"])
    assert rows["float MeZO"]["mean_pct"] == pytest.approx(run["mezo_pct"])
    assert rows["zo"]["gap_mezo"] == pytest.approx(run["zo_pct"] - run["mezo_pct"])
    assert "gap_lora" not in rows["zo"]                    # no LoRA-All measured
    config = DesignConfig()
    t = config.train
    cycles = estimate_cycles(DesignConfig.preset("up5k"), "zo", 256, steps=t.steps,
                             batch=t.batch, queries=t.queries)
    hz = board("icebreaker").soc_mhz * 1e6
    assert rows["zo"]["icebreaker_s"] == pytest.approx(cycles / hz)
    # the device's figure is the SoC's golden session at seed 1
    golden = soc_session.run_finetune(config.replace(train={"seed": 1}), r1_features(DRIFT),
                                      mode="zo", engine="golden")
    assert run["zo_pct"] == pytest.approx(100 * golden.accuracy)

"""The perturb benchmark's bookkeeping: PeZO ratios against the cheapest Gaussian baseline and
the joining of sliced reports (no tools run here)."""

import json

import pytest

from fieldtune.bench.perturb import add_ratios, merge_reports


def row(variant, family, luts, ffs, lanes=16, device="up5k"):
    return {"variant": variant, "family": family, "lanes": lanes, "device": device,
            "luts": luts, "ffs": ffs}


def test_ratios_against_the_gaussian_with_fewest_luts_at_equal_lanes_and_device():
    rows = add_ratios([
        row("clt4-lfsr", "gaussian", 1000, 700),
        row("icdf-lfsr", "gaussian", 900, 800),
        row("clt4-lfsr", "gaussian", 100, 50, lanes=4),          # other lanes: ignored
        row("icdf-lfsr", "gaussian", 10, 10, device="ecp5-85f"),  # other device: ignored
        row("pezo-static-pool-lfsr", "pezo", 360, 600),
        row("uniform-lfsr", "uniform", 300, 300),
    ])
    pezo = rows[4]
    assert (pezo["baseline"], pezo["lut_ratio"], pezo["ff_ratio"]) == ("icdf-lfsr", 0.4, 0.75)
    assert rows[5]["lut_ratio"] is None and rows[0]["baseline"] is None


def test_no_ratio_without_a_gaussian_or_without_synthesis():
    rows = add_ratios([row("pezo-static-lfsr", "pezo", 500, 400),
                       row("clt4-lfsr", "gaussian", 0, 0, lanes=4),
                       row("pezo-static-lfsr", "pezo", 500, 400, lanes=4)])
    assert [r["lut_ratio"] for r in rows] == [None, None, None]


def test_merge_joins_slices_and_a_later_report_wins(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"bench": "perturb", "rows": [
        row("pezo-static-lfsr", "pezo", 1, 1, lanes=64), row("clt4-lfsr", "gaussian", 5, 5)]}))
    b.write_text(json.dumps({"bench": "perturb", "rows": [
        row("clt4-lfsr", "gaussian", 7, 7), row("uniform-lfsr", "uniform", 3, 3, lanes=4)]}))
    rows = merge_reports([a, b])
    assert [(r["variant"], r["lanes"], r["luts"]) for r in rows] == [
        ("uniform-lfsr", 4, 3), ("clt4-lfsr", 16, 7), ("pezo-static-lfsr", 64, 1)]


def test_merge_rejects_other_files(tmp_path):
    other = tmp_path / "mac.json"
    other.write_text(json.dumps({"bench": "mac", "rows": []}))
    with pytest.raises(ValueError, match="is not a 'fieldtune bench perturb' report"):
        merge_reports([other])
    with pytest.raises(ValueError, match="cannot be read as a JSON report"):
        merge_reports([tmp_path / "missing.json"])

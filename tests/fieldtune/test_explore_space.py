"""Design spaces (TOML), the Pareto front and the rows of points that have no figures. No
tool runs here except the one that does not fit (tests/fieldtune/test_explore_cluster.py
sweeps on a cluster)."""

import builtins
import itertools
import json

import pytest
from hypothesis import given, strategies as st
from rich.console import Console

from fieldtune.cli import main
from fieldtune.config import DesignConfig, SECTIONS
from fieldtune.explore.pareto import pareto_front, dominates, candidates
from fieldtune.explore.point import evaluate, INVALID, TOOL_FAILURE, NO_FIT, NOT_BUILT
from fieldtune.explore.space import parse_space, load_space, shipped_spaces
from fieldtune.explore.report import points_table, plot_front
from fieldtune.bench.perturb import VARIANTS
from fieldtune.toolchain import tool_env


# -- spaces -------------------------------------------------------------------------------

def test_fields_ranges_and_shorthands():
    space = parse_space({
        "base": "tiny",
        "fields": {"lanes": [4, 8], "perturb": {"pool_size": {"start": 64, "stop": 256,
                                                              "factor": 2}},
                   "cache.block_size": {"start": 16, "stop": 48, "step": 16},
                   "device": "up5k"},
    })
    assert space.fields == {"lanes": [4, 8], "perturb.pool_size": [64, 128, 256],
                            "cache.block_size": [16, 32, 48], "device": ["up5k"]}
    points = space.points()
    assert len(points) == len(space) == 18
    assert [p.index for p in points] == list(range(18))
    assert points[0].values == {"lanes": 4, "perturb.pool_size": 64, "cache.block_size": 16,
                                "device": "up5k"}
    config, device = points[-1].changes()
    assert device == "up5k"
    assert config["mac"]["lanes"] == config["cache"]["lanes"] == config["perturb"]["lanes"] == 8
    assert config["perturb"]["pool_size"] == 256 and config["cache"]["block_size"] == 48
    # the base is untouched by a point's changes
    assert space.base["perturb"]["pool_size"] == DesignConfig.preset("tiny").perturb.pool_size


def test_perturb_variants_by_pattern():
    space = parse_space({"block": "perturb", "fields": {"perturb": ["*-onthefly-lfsr",
                                                                    "uniform-lfsr"]}})
    assert space.fields["perturb"] == ["pezo-static-onthefly-lfsr",
                                       "pezo-adaptive-onthefly-lfsr", "uniform-lfsr"]
    config, _ = space.points()[0].changes()
    source, shape, scaling, reuse = VARIANTS["pezo-static-onthefly-lfsr"]
    assert config["perturb"]["source"] == source and config["perturb"]["reuse"] == reuse


@pytest.mark.parametrize("doc, message", [
    ({"feilds": {}}, "feilds is not a known space key; known keys are description, base, "
                     "block, objectives, run, fields"),
    ({"base": "huge"}, "base: preset must be one of 'up5k', 'ecp5-85f', 'orangecrab', "
                       "'ecp5-12f', 'ecp5-25f', 'ecp5-45f', 'orangecrab-25f', 'up5k-fo', 'tiny', "
                       "not 'huge'"),
    ({"block": "cpu"}, "block must be one of 'perturb', 'mac', 'loss', 'quantizer', "
                       "'dequantizer', 'forward-cache', 'soc', 'host-link', "
                       "not 'cpu'"),
    ({"objectives": {"area": "min"}}, "objectives.area is not a point figure; figures are "
     "luts, ffs, dsps, brams, fmax_mhz, cycles, projected_time_s, accuracy"),
    ({"objectives": {"luts": "less"}}, "objectives.luts must be 'min' or 'max', not 'less'"),
    ({"run": {"steps": 0}}, "run: train.steps must be an integer from 1 to 1000000, not 0"),
    ({"fields": {"cache.codebook": []}}, "fields.cache.codebook must list at least one value"),
    ({"fields": {"mac.lanes": {"start": 4, "stop": 16}}},
     "fields.mac.lanes must be a range {start, stop, step} or {start, stop, factor}"),
    ({"fields": {"mac.lanes": {"start": 8, "stop": 4, "step": 1}}},
     "fields.mac.lanes is an empty range (8 to 4)"),
    ({"fields": {"lanez": [4]}}, "fields.lanez is not a field; fields are section.field "
     f"(sections {', '.join(SECTIONS)}) or lanes, device, board, perturb"),
    ({"fields": {"device": ["ice40"]}}, "fields.device must name devices among 'up5k', "
     "'ecp5-12f', 'ecp5-25f', 'ecp5-45f', 'ecp5-85f', not 'ice40'"),
    ({"fields": {"perturb": ["gauss-*"]}}, "fields.perturb: 'gauss-*' matches no variant"),
])
def test_space_errors_name_what_is_wrong(doc, message):
    with pytest.raises(ValueError) as info:
        parse_space(doc)
    assert str(info.value).startswith(message)


def test_shipped_spaces_parse():
    names = shipped_spaces()
    assert {"tiny", "perturb", "up5k-lfsr", "icebreaker"} <= set(names)
    assert all(names.values())                         # every one is described
    sizes = {name: len(load_space(name)) for name in names}
    assert sizes["perturb"] == len(VARIANTS) * 3 * 2 == 108
    assert sizes["up5k-lfsr"] == 16
    assert 2 <= sizes["tiny"] <= 6


def test_unknown_space_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="space must be a TOML file or one of .*tiny"):
        load_space("no-such-space")
    bad = tmp_path / "bad.toml"
    bad.write_text("fields = [")
    with pytest.raises(ValueError, match="is not valid TOML"):
        load_space(bad)


# -- the front ----------------------------------------------------------------------------

OBJ = {"luts": "min", "accuracy": "max"}


def _row(luts, accuracy, fits=True, error=None):
    return {"luts": luts, "accuracy": accuracy, "fits": fits, "error": error}


def test_front_by_hand():
    rows = [_row(100, 0.80), _row(200, 0.90), _row(150, 0.70),   # 2 dominated by 0
            _row(300, 0.90),                                     # dominated by 1
            _row(100, 0.80),                                     # equal to 0: both stay
            _row(50, 0.95, fits=False),                          # does not fit
            _row(60, 0.99, error="R1 run failed: x"),            # has an error
            _row(None, 0.99)]                                    # no figure
    assert candidates(rows, OBJ) == [0, 1, 2, 3, 4]
    assert pareto_front(rows, OBJ) == [0, 1, 4]


@given(st.lists(st.tuples(st.integers(1, 20), st.integers(0, 20), st.integers(0, 5)),
                min_size=1, max_size=12))
def test_front_is_exactly_the_undominated(points):
    objectives = {"luts": "min", "accuracy": "max", "fmax_mhz": "max"}
    rows = [{"luts": a, "accuracy": b, "fmax_mhz": c, "fits": True, "error": None}
            for a, b, c in points]
    front = set(pareto_front(rows, objectives))
    for i, j in itertools.product(range(len(rows)), repeat=2):
        # nothing on the front is dominated; everything off it is
        if i in front:
            assert not dominates(rows[j], rows[i], objectives)
    for i in set(range(len(rows))) - front:
        assert any(dominates(rows[j], rows[i], objectives) for j in front)


# -- rows without figures -----------------------------------------------------------------

def _point(fields, block="perturb", run=None, base="tiny"):
    doc = {"block": block, "fields": fields, **({"base": base} if base else {})}
    if run:
        doc["run"] = run
    return parse_space(doc).points()[0]


def test_invalid_point_is_a_row_with_its_error():
    row = evaluate(_point({"perturb.pool_size": [3]}), build="cached")
    with pytest.raises(ValueError) as info:            # the section's own message, verbatim
        DesignConfig.preset("tiny").replace(perturb={"pool_size": 3})
    assert str(info.value).startswith("perturb.pool_size must be")
    assert row["error"] == f"{INVALID}: {info.value}"
    assert row["fits"] is False and row["luts"] is None and row["accuracy"] is None
    assert row["config"] == {"perturb.pool_size": 3} and not row["tool_run"]
    json.dumps(row)                                       # a row is plain data


def test_soc_point_needs_the_whole_design_valid():
    row = evaluate(_point({"cache.lanes": [8]}, block="soc"), build="cached")
    with pytest.raises(ValueError) as info:            # the design's own message
        DesignConfig.preset("tiny").replace(cache={"lanes": 8})
    assert str(info.value).startswith("cache.lanes must")
    assert row["error"] == f"{INVALID}: {info.value}"


def test_block_point_without_a_whole_design_has_no_accuracy(tmp_path, monkeypatch):
    """A block needs only its own section; R1 needs the whole design (L = 64: the 224 R1
    features are not a multiple of 64 lanes)."""
    monkeypatch.setenv("FIELDTUNE_CACHE", str(tmp_path))
    row = evaluate(_point({"lanes": [64]}, run={"mode": "zo", "steps": 1}, base=None),
                   build="cached")
    assert row["note"].startswith("R1 needs a whole design, and this one is invalid: "
                                  "mac.taps must add up to a multiple of mac.lanes (64)")
    assert row["accuracy"] is None
    assert row["error"] == f"{NOT_BUILT}: no cached build of this design (--no-build)"


def test_no_build_runs_nothing(tmp_path, monkeypatch):
    """``--no-build`` reports what the caches hold: no tool run and no R1 run."""
    monkeypatch.setenv("FIELDTUNE_CACHE", str(tmp_path))
    row = evaluate(_point({"perturb": ["uniform-lfsr"]}, run={"mode": "zo", "steps": 2000}),
                   build="cached")
    assert row["error"] == f"{NOT_BUILT}: no cached build of this design (--no-build)"
    assert row["note"] == "R1 not run (--no-build) and no cached result"
    assert row["accuracy"] is None and not any(tmp_path.rglob("*.json"))


def test_tool_failure_is_a_row_with_its_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("FIELDTUNE_CACHE", str(tmp_path))
    failing = tmp_path / "yosys"
    failing.write_text("#!/bin/sh\necho 'ERROR: out of licences' >&2\nexit 3\n")
    failing.chmod(0o755)
    env = dict(tool_env(), YOSYS=str(failing))
    row = evaluate(_point({"perturb": ["uniform-lfsr"]}, run={"mode": "zo", "steps": 2}),
                   env=env)
    assert row["error"] == f"{TOOL_FAILURE}: ERROR: out of licences"
    assert row["luts"] is None and not row["tool_run"] and not row["cache_hit"]
    # R1 still ran: the figures that do not need the tools are there
    assert 0 <= row["accuracy"] <= 1 and row["cycles"] > 0
    assert row["projected_time_s"] is None


def test_point_that_does_not_fit_is_a_row_with_its_reason(tmp_path, monkeypatch):
    """64 lanes of adaptive pool reuse need 33 block RAMs; the UP5K has 30 (found after
    synthesis, before place and route). (The static pool fits since its rows hold
    magnitudes: 24.)"""
    monkeypatch.setenv("FIELDTUNE_CACHE", str(tmp_path))
    row = evaluate(_point({"lanes": [64], "perturb": ["pezo-adaptive-pool-xoshiro"],
                           "device": ["up5k"]}, base="up5k"))
    assert row["error"] == f"{NO_FIT}: brams 33 > 30"
    assert row["fits"] is False and row["brams"] == 33 and row["fmax_mhz"] is None
    assert row["tool_run"] and not row["cache_hit"]
    again = evaluate(_point({"lanes": [64], "perturb": ["pezo-adaptive-pool-xoshiro"],
                             "device": ["up5k"]}, base="up5k"))
    assert again["cache_hit"] and not again["tool_run"] and again["error"] == row["error"]


# -- report -------------------------------------------------------------------------------

def _doc(rows):
    return {"space": "t", "objectives": OBJ, "points": rows, "pareto": pareto_front(rows, OBJ)}


def test_table_marks_the_front_and_errors():
    rows = [{"index": i, "config": {"lanes": l}, "device": "up5k", "fits": f, "luts": lut,
             "dsps": 0, "brams": 0, "fmax_mhz": 40.0, "accuracy": acc,
             "projected_time_s": None, "error": err, "note": None}
            for i, (l, f, lut, acc, err) in enumerate([(4, True, 500, 0.7, None),
                                                       (8, True, 900, 0.6, None),
                                                       (16, False, 9000, None,
                                                        "does not fit: luts 9000 > 5280")])]
    console = Console(width=200, record=True)
    console.print(points_table(_doc(rows)))
    text = console.export_text()
    assert "3 points, 1 on the front" in text
    assert "does not fit: luts 9000 > 5280" in text
    assert text.count("*") == 1


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [{"index": i, "luts": l, "accuracy": a, "fits": True, "error": None}
            for i, (l, a) in enumerate([(500, 0.7), (900, 0.8), (700, 0.6)])]
    plot_front(_doc(rows), tmp_path / "front.png")
    assert (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    real = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ValueError, match=r"--plot needs matplotlib, which is not installed; "
                                         r"install it with: pip install 'fieldtune\[plot\]'"):
        plot_front(_doc([]), tmp_path / "front.png")


# -- command line -------------------------------------------------------------------------

def test_cli_lists_the_shipped_spaces(capsys):
    assert main(["explore", "--list"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "perturb" in out and "icebreaker" in out


@pytest.mark.parametrize("argv, message", [
    (["explore"], "error: explore needs a SPACE (a TOML file or a shipped space; --list "
                  "names them)"),
    (["explore", "nowhere"], "error: space must be a TOML file or one of"),
    (["explore", "tiny", "--plot", "front.txt"], "error: --plot must name a .png, .svg or "
                                                 ".pdf file, not 'front.txt'"),
    (["explore", "tiny", "--workers", "-1"], "error: --workers must be a non-negative "
                                             "integer, not -1"),
    (["explore", "tiny", "--workers", "2", "--scheduler", "tcp://h:8786"],
     "error: give either --workers (an embedded cluster) or --scheduler (a running "
     "cluster), not both"),
])
def test_cli_mistakes_end_in_one_error_line(argv, message, capsys):
    assert main(argv) == 2
    # one message (the console may wrap it at its width)
    err = " ".join(capsys.readouterr().err.split())
    assert err.startswith(message) and err.count("error:") == 1


def test_cli_bad_space_file(tmp_path, capsys):
    space = tmp_path / "s.toml"
    space.write_text('[fields]\n"cache.codebok" = ["unf4"]\n')
    assert main(["explore", str(space), "--workers", "0"]) == 2
    with pytest.raises(ValueError) as info:            # the section's own message
        DesignConfig().replace(cache={"codebok": "unf4"})
    assert str(info.value).startswith("cache.codebok is not a known field; known fields are")
    assert " ".join(capsys.readouterr().err.split()) == f"error: fields.cache.codebok: {info.value}"

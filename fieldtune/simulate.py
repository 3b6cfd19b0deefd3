"""``fieldtune simulate --vcd FILE``: a short fine-tuning run of the SoC with waveforms.

A few first-order mini-batches or zeroth-order steps on a small slice of R1 (the first
``--samples`` fine-tuning samples, evaluated on the first ``--test-samples`` test samples),
simulated cycle-accurately by the SoC runner with a VCD written for GTKWave. Short on purpose:
waveforms of a whole fine-tuning run would be gigabytes.
"""

from pathlib import Path

from .cli_common import add_config_arguments, load_config, output_file
from .finetune import check_engine, yosys_env, simulate_modes
from .sim.data import R1_DRIFT_DEG
from .sim.engines import registry
from .sim.scenario import r1_features


__all__ = ["add_arguments", "run", "slice_r1", "WAVEFORM_ENGINES"]


#: Engines that can write a VCD.
WAVEFORM_ENGINES = registry.names(waveforms=True)


def add_arguments(parser):
    parser.add_argument("--vcd", metavar="FILE", required=True, type=output_file,
                        help="write the waveforms here (VCD, opens in GTKWave)")
    add_config_arguments(parser)
    parser.add_argument("--mode", choices=("fo", "zo"), default="fo",
                        help="first order or zeroth order (default: %(default)s)")
    parser.add_argument("--engine", choices=WAVEFORM_ENGINES, default="cxxrtl",
                        help="simulation engine (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=32,
                        help="fine-tuning samples from R1 (default: %(default)s)")
    parser.add_argument("--test-samples", type=int, default=16,
                        help="test samples evaluated after training (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=1,
                        help="first-order epochs over the samples (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=4,
                        help="zeroth-order steps (default: %(default)s)")
    parser.add_argument("--drift", type=float, default=R1_DRIFT_DEG, metavar="DEG",
                        help="rotation of the drift pool in degrees (default: %(default)s)")


def slice_r1(data, samples, test_samples):
    """A copy of :func:`~fieldtune.sim.scenario.r1_features`' dict keeping the first
    ``samples`` fine-tuning and ``test_samples`` test samples."""
    if not 1 <= samples <= data["n_finetune"]:
        raise ValueError(f"--samples must be an integer from 1 to {data['n_finetune']}, "
                         f"not {samples}")
    if not 1 <= test_samples <= data["n_test"]:
        raise ValueError(f"--test-samples must be an integer from 1 to {data['n_test']}, "
                         f"not {test_samples}")
    out = dict(data)
    for split, n in (("train", samples), ("test", test_samples)):
        for kind in ("features", "logits", "labels"):
            out[f"{split}_{kind}"] = data[f"{split}_{kind}"][:n]
    out["n_finetune"], out["n_test"] = samples, test_samples
    return out


def run(args, console):
    config = load_config(args)
    train = {"epochs": args.epochs} if args.mode == "fo" else {"steps": args.steps}
    config = config.replace(train=train)            # validates epochs/steps by name
    if config.train.batch > args.samples:
        raise ValueError(f"--samples must be at least the batch ({config.train.batch}), "
                         f"not {args.samples}")
    check_engine(args.engine)
    data = slice_r1(r1_features(args.drift), args.samples, args.test_samples)
    vcd = Path(args.vcd)
    result = simulate_modes(config, data, (args.mode,), args.engine, console,
                            env=yosys_env(console), vcd=str(vcd))[args.mode]
    what = (f"{args.epochs} epoch(s)" if args.mode == "fo" else f"{args.steps} step(s)")
    console.print(f"{args.mode.upper()} on {args.engine}: {what} on {args.samples} samples, "
                  f"batch {config.train.batch}: {result.cycles:,} training cycles, "
                  f"{result.eval_cycles:,} evaluation cycles; test accuracy on "
                  f"{args.test_samples} samples {100 * result.accuracy:.1f} %")
    size = vcd.stat().st_size if vcd.exists() else 0
    console.print(f"wrote {vcd} ({size / 1e6:.1f} MB); view it with: gtkwave {vcd}")
    return 0

"""``fieldtune pretrain``: pretrain R1's backbone in numpy, quantize it to int8, write the .npz.

With the defaults this regenerates the file shipped in the package
(``fieldtune/sim/data/r1_backbone.npz``) bit for bit: pretraining is exact on dyadic grids (see
:mod:`fieldtune.sim.backbone`), so any machine, BLAS and thread count gives the same weights.
"""

import time
from pathlib import Path

from rich.progress import Progress
from rich.table import Table

from .cli_common import output_file
from .sim.backbone import PRETRAIN_DEFAULTS, SHIPPED_PATH, build_backbone, save_backbone
from .sim.data import load_r1


__all__ = ["add_arguments", "run"]


def add_arguments(parser):
    parser.add_argument("-o", "--output", metavar="FILE", default=str(SHIPPED_PATH),
                        type=output_file,
                        help="where to write the .npz (default: the file shipped in the "
                             "package, %(default)s)")
    parser.add_argument("--seed", type=int, default=PRETRAIN_DEFAULTS["seed"],
                        help="initialization and shuffling seed (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=PRETRAIN_DEFAULTS["epochs"],
                        help="pretraining epochs (default: %(default)s)")


def run(args, console):
    if args.seed < 0 or args.seed >= 2**63:
        raise ValueError(f"--seed must be an integer from 0 to 2**63-1, not {args.seed}")
    if not 1 <= args.epochs <= 10_000:
        raise ValueError(f"--epochs must be an integer from 1 to 10000, not {args.epochs}")
    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("pretraining (numpy)", total=args.epochs)
        fb, qb = build_backbone(args.seed, epochs=args.epochs,
                                progress=lambda done, total: progress.update(task, completed=done))
    seconds = time.perf_counter() - start
    output = Path(args.output)
    save_backbone(output, fb, qb, seed=args.seed, epochs=args.epochs)

    data = load_r1()
    table = Table(title=f"R1 backbone, seed {args.seed}, {args.epochs} epochs, {seconds:.1f} s")
    table.add_column("backbone")
    table.add_column("before drift (upright test)", justify="right")
    table.add_column(f"after {data.level}° drift", justify="right")
    for name, model in (("float", fb), ("int8", qb)):
        table.add_row(name, f"{100 * model.accuracy(data.test_upright, data.test_labels):.1f} %",
                      f"{100 * model.accuracy(data.test_images, data.test_labels):.1f} %")
    console.print(table)
    console.print(f"activation exponents {qb.act_exp}, requantization (M, S) "
                  + ", ".join(f"{n}=({qb.mult[n]}, {qb.shift[n]})" for n in qb.mult))
    console.print(f"wrote {output}")
    return 0

"""The training sequencer: the epoch, mini-batch and query loops of the SoC, as micro-ops
(:mod:`.sequencer`), with its programs as typed data (:mod:`.programs`) compiled to
micro-code (:mod:`.microcode`)."""

from .programs import Dynamic, MacOp, Fetch, PerturbRequest, Phase, Program, programs
from .microcode import Microcode, compile_programs
from .sequencer import (Mode, RUN_CONFIG, COUNTERS, STORED_COUNTERS, COUNTER_WIDTH,
                        counter_widths,
                        SEQUENCER_ERRORS, MAX_QUERIES, MAX_BATCH, CSHIFT_MIN, CSHIFT_MAX,
                        fetch_layout, coef_shift_constants, default_watchdog, Sequencer)


__all__ = ["Mode", "RUN_CONFIG", "COUNTERS", "STORED_COUNTERS", "COUNTER_WIDTH",
           "counter_widths",
           "SEQUENCER_ERRORS", "MAX_QUERIES", "MAX_BATCH", "CSHIFT_MIN", "CSHIFT_MAX",
           "fetch_layout", "coef_shift_constants", "default_watchdog", "Sequencer", "Dynamic",
           "MacOp", "Fetch", "PerturbRequest", "Phase", "Program", "programs", "Microcode",
           "compile_programs"]

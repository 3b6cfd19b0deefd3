"""The training sequencer: the epoch, mini-batch and query loops of the SoC, as micro-ops.

:class:`Sequencer` turns one *run* (a start with the run-time configuration of the run
registers, which the register bank locks while the run is busy) into the streams the datapath
of :class:`~fieldtune.rtl.soc.SoC` consumes:

* ``mac_cmd``: micro-ops for the :class:`~fieldtune.rtl.mac.AdapterMACArray`, exactly the
  programs of :func:`fieldtune.sim.golden.train.fo_program` / ``zo_program`` (the golden
  model of the SoC composes those);
* ``fetch``: sample reads from the forward cache: the features go to the MAC array's ``x``
  stream; a read for a forward also makes the SoC's sample router issue the loss unit's
  command (the sample's frozen logits z0 and label, which the cache delivers with the last
  beat; the zeroth-order sign);
* ``zreq``: perturbation requests ``(seed, step)`` (each forward of a zeroth-order query and
  its update replay the same step).

It consumes the loss unit's ``result`` stream (counters, the zeroth-order sums). Runs:

=========  ===============================================================================
mode       what a run does
=========  ===============================================================================
``FO``     ``epochs`` passes over the cached records in mini-batches of ``batch`` (a short
           last batch still divides by ``batch``): per mini-batch BATCH, the forwards
           (MATVEC, read), then the updates (UPDATE, read). Epoch ``e`` (0-based) visits the
           records in the order of :class:`~.order.RecordOrder` (cache order, or a keyed
           permutation per epoch: ``order``, ``order_seed``) and trains at
           ``eta = 2**-(lr_shift + #{i : 1 <= lr_step_i <= e})``. With early stop
           (``[soc] early_stop``) the last ``holdout`` records are not trained on; after
           every ``stop_every``-th epoch they are evaluated (program HO, counted apart:
           ``stop.correct``) and ``patience`` evaluations in a row without a new best end
           the run (``stop.stopped``; :func:`fieldtune.sim.golden.schedule.train_fo_scheduled`).
``ZO``     ``steps`` steps; step ``s`` uses the mini-batch at the cursor (which advances by
           ``batch`` and wraps to 0 when the next batch would start past the records). Per
           step, per query ``i < queries``: for every sample the forward at ``W + eps z`` and
           at ``W - eps z`` with ``z`` of perturbation step ``p = step + s*queries + i``; then
           per query the update ``W -= round_half_up(g_i / queries) * 2**-cshift * z`` with
           ``z`` replayed (``g_i``: the loss unit's sum of ``L+ - L-`` over the batch).
``EVAL``   one forward per record ``first .. first+count-1`` (no update): loss and accuracy
           land in the counters.
``LOAD``   LOAD ops for every weight region; the host writes the words through the weight
           window.
``DUMP``   DUMP ops for every weight region; the host reads the words.
=========  ===============================================================================

Illegal configurations set error strobes (:data:`SEQUENCER_ERRORS`) and start nothing: the
run ends at once with ``done``. A start while busy is flagged and ignored. The watchdog
aborts a FO/ZO/EVAL run after ``watchdog`` cycles without a transfer on any datapath stream
(the SoC's ``progress`` input); the host may abort any run. An abort raises ``flush`` for
:attr:`Sequencer.flush_cycles` cycles (the SoC resets the datapath with it) and ends the run.

Timing: one action (op, fetch, request) per cycle when its stream is ready; the sequencer
waits on back-pressure, never drops anything. ``done`` rises when everything issued has
completed (MAC array idle, every loss result received, the datapath idle).
"""

import enum as py_enum

from amaranth.hdl import Module, Signal, Mux, Cat, Const, Shape, Value, signed, unsigned
from amaranth.lib import wiring, stream, data, enum
from amaranth.lib.wiring import In, Out

from ..params import (MODES, RUN_FIELDS, LR_STEPS_MAX, SocParams, run_register_names,
                      run_field_lsb)
from ..csr.registers import store_port, scratch_base
from ..mac.params import MacParams
from ..mac.layout import Layout
from ..mac.array import update_shift
from ..mac.ops import MAC_OP
from ..loss.params import LossParams
from ..loss.unit import loss_result_layout, ZOSign
from ..loss.tables import zo_sum_width
from ..cache.params import CacheParams, INDEX_WIDTH
from ..cache.layout import CacheLayout
from ..cache.cache import drain_bound
from ..perturb.params import PerturbParams
from ..perturb.engine import Request
from .programs import Dynamic, MacOp, programs
from .microcode import compile_programs
from .order import RecordOrder, index_bits


__all__ = ["Mode", "RUN_CONFIG", "stop_layout", "COUNTERS", "STORED_COUNTERS",
           "counter_widths", "SEQUENCER_ERRORS",
           "MAX_QUERIES", "MAX_BATCH", "CSHIFT_MIN", "CSHIFT_MAX", "fetch_layout",
           "coef_shift_constants", "Sequencer",
           "default_watchdog"]


class Mode(enum.Enum, shape=RUN_FIELDS["mode"].width):
    """What a run does (the ``mode`` register); values 5 to 7 are illegal."""
    FO = 0
    ZO = 1
    EVAL = 2
    LOAD = 3
    DUMP = 4


#: Most zeroth-order queries per step (``TrainParams.queries``).
MAX_QUERIES = RUN_FIELDS["queries"].hi
#: Largest mini-batch (``TrainParams.batch``; the loss unit's sum holds 256 pairs).
MAX_BATCH = RUN_FIELDS["batch"].hi
#: Range of the MAC array's signed 6-bit ``cshift`` field.
CSHIFT_MIN, CSHIFT_MAX = -32, 31

#: The run-time configuration, the run registers (widths from
#: :data:`~fieldtune.rtl.params.RUN_FIELDS`).
RUN_CONFIG = data.StructLayout({f.name: f.width for f in RUN_FIELDS.values()})


#: The order in which CHECK reads the run registers (:attr:`Sequencer.check_order`).
CHECK_ORDER = ("mode", "early_stop", "batch", "queries", "shifts", "epochs", "steps",
               "zo_cursor", "eval_range", "watchdog", "seed", "lr_steps_lo", "lr_steps_hi",
               "order")


def stop_layout():
    """The early-stop report: the last held-out count (``correct``, 0 to ``holdout``) and
    whether early stop ended the run (``stopped``)."""
    return data.StructLayout({"correct": RUN_FIELDS["holdout"].width, "stopped": 1})

#: Counters of a run (saturating at all ones), reset by every accepted start.
COUNTERS = ("cycles", "samples", "epochs", "steps", "loss_sum", "correct")
#: The counters the loss results add to: words of the register bank's block RAM (stored
#: read-only registers), each result added by one saturating adder (``Sequencer._tally``);
#: the others are flip-flops (the ``counters`` port).
STORED_COUNTERS = ("samples", "loss_sum", "correct")
#: Width of the widest counters.
COUNTER_WIDTH = 32


def counter_widths(cache: CacheParams):
    """Bits of each counter: 32 (saturating), but ``epochs`` and ``steps`` only as wide as
    the largest run the registers can ask for (so they never saturate and serve as the
    sequencer's loop counters): FO steps <= epochs * records (a batch of 1), ZO steps <=
    ``steps``; ZO passes over the records <= its steps (a batch never exceeds the
    records)."""
    epochs = (1 << RUN_FIELDS["epochs"].width) - 1
    steps = (1 << RUN_FIELDS["steps"].width) - 1
    return {"cycles": COUNTER_WIDTH, "samples": COUNTER_WIDTH,
            "epochs": max(epochs, steps).bit_length(),
            "steps": max(steps, epochs * cache.capacity).bit_length(),
            "loss_sum": COUNTER_WIDTH, "correct": COUNTER_WIDTH}


#: Error strobes of the sequencer, in register bit order, with their meaning.
SEQUENCER_ERRORS = {
    "bad_mode": "mode is not FO, ZO (those of them built: soc.modes), EVAL, LOAD or DUMP",
    "zero_epochs": "FO with epochs = 0",
    "bad_batch": "batch is not a power of two, or above mac.max_batch (FO) or 256 (ZO)",
    "batch_count": "batch larger than the cached records (FO, ZO)",
    "bad_shift": "lr_shift (with every lr_step) / eps_shift / zo_lr_shift give a scaling the "
                 "MAC array cannot do",
    "bad_steps": "ZO with steps = 0, or queries not a power of two from 1 to 16",
    "bad_cursor": "ZO cursor not below the cached records",
    "eval_range": "EVAL range empty or beyond the cached records",
    "bad_watchdog": "watchdog budget 0 (FO, ZO, EVAL)",
    "bad_schedule": "FO with order or a learning-rate step set on a design built without the "
                    "schedule ([soc] schedule = false); early stop ([soc] early_stop) with "
                    "every above 100, patience not 1 to 16, holdout above 4096, or every "
                    "set and holdout 0",
    "busy": "start, cache clear or run-register write while a run is busy: ignored",
    "watchdog": "a run made no progress for watchdog cycles: aborted",
    "aborted": "the host aborted a run",
}


def fetch_layout():
    """A sample read: cache ``index``; ``forward`` (a loss command goes with it: the read
    feeds a forward whose result the loss unit takes); ``zo`` (the zeroth-order sign of that
    forward's loss); ``first`` (the first sample of a zeroth-order query: the sum restarts)."""
    return data.StructLayout({"index": unsigned(INDEX_WIDTH), "forward": 1, "zo": ZOSign,
                              "first": 1})


def coef_shift_constants(mac: MacParams, loss: LossParams):
    """``(C_FO, C_A, C_ZO, K0)``: the scaling of a first-order update is
    ``cs = C_FO - lr_shift - log2(batch)`` (the BATCH op stores ``dz`` scaled by it; low-rank
    ``A``: ``C_A - ...``, so COLACC scales ``v`` by the constant ``C_A - C_FO``), the
    ``cshift`` of a zeroth-order update ``C_ZO - zo_lr_shift - log2(batch) + eps_shift``, and
    the perturbation's ``zshift`` ``K0 - eps_shift`` (mirrors
    :func:`fieldtune.sim.golden.train.fo_coef_shifts` / ``zo_coef_shift`` /
    :func:`fieldtune.sim.golden.mac.zshift_for`; a test holds them equal)."""
    us, wf, ff = update_shift(mac), mac.weight_frac, mac.feature_frac
    v_frac = loss.prob_frac + wf - (mac.coef_width - 1)
    z_align = max(mac.feature_width, mac.perturb_width) - mac.perturb_width
    c_fo = us + wf - loss.prob_frac - ff
    c_a = us + wf - v_frac - ff
    c_zo = us + wf - loss.loss_frac - (mac.perturb_frac + z_align) - 1
    return c_fo, c_a, c_zo, wf - mac.perturb_frac


def default_watchdog(mac: MacParams, cache: CacheParams, perturb: PerturbParams):
    """Reset value of the watchdog budget: a power of two at least 65,536 and 8 times the
    longest legitimate pause of the datapath (a pool fill plus a MATVEC and a cache read)."""
    pause = 8 * (Layout(mac).words + perturb.pool_size + CacheLayout(cache).beats + 256)
    return max(1 << 16, 1 << (pause - 1).bit_length())


def _log2(m, value):
    """``floor(log2 value)`` (0 for 0: the golden model's ``bit_length - 1``, which the shift
    checks use even when ``value`` is not a power of two)."""
    log = Signal(range(max(2, len(value))), name="log2")
    for i in range(1, len(value)):          # the highest bit set wins
        with m.If(value[i]):
            m.d.comb += log.eq(i)
    return log


def _sat_add(a, b, width=COUNTER_WIDTH):
    """``a + b`` saturating at ``2**width - 1`` (counters never wrap)."""
    s = a + b
    return Mux(s[width:].any(), (1 << width) - 1, s[:width])


def _one_hot(value):
    """Exactly one bit of ``value`` set (halves: one hot in one, zero in the other; no
    decrement)."""
    if len(value) == 1:
        return value[0]
    h = len(value) // 2
    lo, hi = value[:h], value[h:]
    return (_one_hot(lo) & (hi == 0)) | ((lo == 0) & _one_hot(hi))


def _pow2_upto(value, hi):
    """``value`` is a power of two at most ``hi``: one hot in its low ``log2 hi + 1`` bits
    (a power of two ``hi``; else the floor power's), zero above (and at most ``hi``)."""
    k = hi.bit_length()
    ok = _one_hot(value[:k]) & (value[k:] == 0) if len(value) > k else _one_hot(value)
    return ok if hi & (hi - 1) == 0 else ok & (value <= hi)


def _times(value, factor, width):
    """``value * factor`` modulo ``2**width`` as a sum of shifted copies (one adder per set
    bit of the constant ``factor`` past the first; never a multiplier block)."""
    terms = [(value << i)[:width] for i in range(factor.bit_length()) if factor >> i & 1]
    out = Const(0, width)
    for t in terms:
        out = (out + t)[:width]
    return out


def _count(m, counter, when, clear, saturate=True):
    """``counter + 1`` when ``when`` (stopping at all ones if ``saturate``: the incrementer's
    carry out disables the flip-flops, no all-ones detector), 0 when ``clear``. The clear
    acts through the enable (``clear`` enables, then resets), the form of the iCE40's
    SB_DFFESR: no multiplexer per bit."""
    w = len(counter)
    s = counter + 1
    with m.If(clear | (when & ~s[w] if saturate else when)):
        m.d.sync += counter.eq(Mux(clear, 0, s[:w]))


class Sequencer(wiring.Component):
    """Runs FO, ZO, EVAL, LOAD and DUMP (see the module documentation).

    Parameters
    ----------
    mac : MacParams
    loss : LossParams
    cache : CacheParams
    store_words : dict or None
        The register bank's block-RAM word of each stored register
        (:func:`~fieldtune.rtl.csr.registers.store_words` of the bank's registers: their bus
        addresses); None: :attr:`stored` packed from word 0.

    Attributes
    ----------
    start, abort : In(1)
        Strobes (the ``control`` register's ``w1p`` bits).
    store : Out(store_port(store_depth))
        The register bank's block RAM (:func:`~fieldtune.rtl.csr.registers.store_port`):
        the run registers at words :meth:`store_address`, read when needed (they must not
        change while ``busy``: the bank locks them, see
        :func:`~fieldtune.rtl.csr.map.run_registers`), and the zeroth-order query sums in
        the scratch words.
    records : In(range(capacity + 1))
        Records in the forward cache; latched on ``start``.
    mac_cmd : Out(stream.Signature(MAC_OP))
    fetch : Out(stream.Signature(fetch_layout()))
    zreq : Out(stream.Signature(Request))
    result : In(stream.Signature(loss_result_layout))
        Always ready.
    mac_idle, datapath_idle, engine_busy, progress : In(1)
        Completion (``done`` waits for all three) and watchdog inputs.
    mode : Out(Mode)
        The mode of the current (or last) run.
    busy, done : Out(1)
        ``busy`` from start to the end of the run; ``done`` from the end of a run (or of a
        rejected start) to the next accepted start.
    accepted : Out(1)
        Strobe: a run was accepted (clears the MAC array's flags and the window lanes).
    flush : Out(1)
        Datapath reset during an abort.
    counters : Out(COUNTERS)
    next_step, next_cursor : Out
        Zeroth order: the perturbation step and cursor the next run continues from.
    errors : Out(SEQUENCER_ERRORS)
        One-cycle strobes.
    stop : Out(stop_layout())
        With ``early_stop`` only: the last run's last held-out count and whether early stop
        ended it (cleared by every accepted start).
    """

    def __init__(self, mac: MacParams, loss: LossParams, cache: CacheParams,
                 perturb: PerturbParams, modes=MODES, schedule=True, early_stop=False,
                 store_words=None):
        for name, value, cls in (("mac", mac, MacParams), ("loss", loss, LossParams),
                                 ("cache", cache, CacheParams),
                                 ("perturb", perturb, PerturbParams)):
            if not isinstance(value, cls):
                raise TypeError(f"{name} must be a {cls.__name__}, not {type(value).__name__}")
        self.mac, self.loss, self.cache, self.perturb = mac, loss, cache, perturb
        #: Training modes built (``SocParams.modes``): the loops of the others are left out.
        self.modes = tuple(SocParams(modes=modes).modes)
        #: The first-order run schedule is built (``SocParams.schedule``): record order and
        #: learning-rate steps.
        self.schedule = SocParams(schedule=schedule).schedule
        #: The first-order early stop is built (``SocParams.early_stop``; with first order).
        self.early_stop = (SocParams(schedule=schedule, early_stop=early_stop).early_stop
                           and "fo" in self.modes)
        self.layout = Layout(mac)
        c_fo, c_a, _, _ = coef_shift_constants(mac, loss)
        #: COLACC's ``cshift`` (low-rank first order): ``v`` scaled for A's update.
        self.colacc_cshift = c_a - c_fo
        if len(self.layout.regions) == 2 and not CSHIFT_MIN <= self.colacc_cshift \
                <= mac.coef_width - 1:
            raise ValueError(f"mac.coef_width must be at least {self.colacc_cshift + 1} for "
                             f"low-rank adapters, not {mac.coef_width}")
        #: Cycles ``flush`` stays high: every beat the cache may still hold drains.
        self.flush_cycles = drain_bound(cache, 2) + 16
        #: The run registers, in the order of their words in the register bank's block RAM
        #: (:func:`~fieldtune.rtl.params.run_register_names`); after them the scratch words
        #: (the zeroth-order query sums, from :attr:`scratch_base`).
        self.run_registers = run_register_names(self.early_stop)
        #: The words of the register bank's block RAM, in order (the bank's ``stored``): the
        #: run registers and the stored counters, in map order (``early_stop`` last).
        self.stored = (*run_register_names(False), *STORED_COUNTERS,
                       *(("early_stop",) if self.early_stop else ()))
        #: Their words in the block RAM (``store_words``).
        self.store_words = ({n: i for i, n in enumerate(self.stored)} if store_words is None
                            else {n: store_words[n] for n in self.stored})
        if store_words is not None and set(store_words) != set(self.stored):
            raise ValueError(f"store_words must name the stored registers {self.stored}, not "
                             f"{tuple(store_words)}")
        self.scratch_base = scratch_base(max(self.store_words.values()) + 1)
        #: Scratch words the register bank must give the sequencer: the query sums and a
        #: word never written (it reads 0: the query sum is written as 0 + sum by the
        #: counters' adder).
        self.scratch = MAX_QUERIES + 1 if "zo" in self.modes else 0
        self.zero_word = self.scratch_base + MAX_QUERIES
        self.store_depth = self.scratch_base + self.scratch
        #: The run registers CHECK reads, one a cycle, in this order: ``mode`` first (every
        #: check depends on it), ``order`` last (its seed keys the record walk as the run
        #: is accepted); ``zo_step`` is read by the zeroth-order start only.
        self.check_order = tuple(n for n in CHECK_ORDER if n in self.run_registers)
        stop = {"stop": Out(stop_layout())} if self.early_stop else {}
        super().__init__({
            "start": In(1),
            "abort": In(1),
            "store": Out(store_port(self.store_depth)),
            "records": In(range(cache.capacity + 1)),
            "mac_cmd": Out(stream.Signature(MAC_OP)),
            "fetch": Out(stream.Signature(fetch_layout())),
            "zreq": Out(stream.Signature(Request)),
            "result": In(stream.Signature(loss_result_layout(loss))),
            "mac_idle": In(1),
            "datapath_idle": In(1),
            "engine_busy": In(1),
            "progress": In(1),
            "mode": Out(Mode),
            "busy": Out(1),
            "done": Out(1),
            "accepted": Out(1),
            "flush": Out(1),
            "counters": Out(data.StructLayout({c: w for c, w in counter_widths(cache).items()
                                               if c not in STORED_COUNTERS})),
            "next_step": Out(32),
            "next_cursor": Out(INDEX_WIDTH),
            "errors": Out(data.StructLayout({e: 1 for e in SEQUENCER_ERRORS})),
            **stop,
        })

    # -- gateware ---------------------------------------------------------------------------

    #: Control states, in encoding order, and the training mode that needs them (None: every
    #: design). ``EXEC`` runs a program's micro-code (:mod:`.microcode`) from ``pc``.
    CONTROL_STATES = {"IDLE": None, "CHECK": None, "FO_BATCH": "fo", "FO_NEXT": "fo",
                      "FO_EPOCH": "fo", "ZO_LOAD": "zo", "ZO_CURSOR": "zo",
                      "ZO_STEP": "zo", "ZF_NEXT": "zo", "ZU_WAIT": "zo", "ZU_READ": "zo",
                      "ZU_NEXT": "zo", "STEP_END": "zo", "EV_START": None,
                      "EXEC": None, "DRAIN": None, "ABORT": None,
                      "HO_START": "early_stop", "HO_DONE": "early_stop"}
    #: The training mode of each program (None: every design; ``early_stop``: designs with
    #: it).
    PROGRAM_MODES = {"FO": "fo", "ZF": "zo", "ZU": "zo", "EV": None, "LD": None, "DP": None,
                     "HO": "early_stop"}

    def _built(self):
        """What the design builds: None (everything), its modes, ``early_stop``."""
        return (None, *self.modes, *(("early_stop",) if self.early_stop else ()))

    def programs(self):
        """This design's programs (:func:`~fieldtune.rtl.sequencer.programs.programs`) of the
        modes it builds."""
        return {name: prog
                for name, prog in programs(len(self.layout.regions), self.colacc_cshift).items()
                if self.PROGRAM_MODES[name] in self._built()}

    def microcode(self):
        """The programs compiled to ROM words (:func:`.microcode.compile_programs`)."""
        return compile_programs(self.programs())

    def state_enum(self):
        """The control states as an enumeration (names show in waveforms)."""
        names = [n for n, mode in self.CONTROL_STATES.items() if mode in self._built()]
        return enum.Enum("SequencerState", [(n, i) for i, n in enumerate(names)])

    def elaborate(self, platform):
        m = Module()
        code = self.microcode()
        State = self.state_enum()
        r = _RunState(self, State, code)
        if "fo" in self.modes and self.schedule:
            m.submodules.order = r.order = self._record_order(m, r)
        if self.early_stop:
            self._held_out(m, r)
        # the held-out forwards are an evaluation's (no dz: the router asks the loss unit
        # for dz in FO only)
        mode = Mux(r.ho, Mode.EVAL, r.mode) if self.early_stop else r.mode
        m.d.comb += [self.mode.eq(mode), self.next_step.eq(r.pstep),
                     self.next_cursor.eq(r.base)]
        m.d.comb += [r.busy.eq(r.state != State.IDLE), self.busy.eq(r.busy),
                     r.sample.eq(r.base + r.n), r.batch.eq(Const(1, len(r.batch)) << r.lb),
                     r.cb.eq(_times(r.n, r.classes, len(r.cb))),
                     r.vb.eq(r.v_base + _times(r.n, r.inner, len(r.vb)))]
        # the run registers' memory reads the watchdog's word unless a state reads another
        m.d.comb += self.store.raddr.eq(self.store_address("watchdog"))
        got = self._results(m, r)
        self._counters(m, r, got)
        wd_fire = self._watchdog(m, r)
        m.d.comb += self.accepted.eq(0)
        with m.If(r.busy & self.start):
            m.d.comb += self.errors.busy.eq(1)

        # one adder for the query's step (pstep + qi) and the next step's (+ queries at
        # STEP_END, where qi = queries - 1): pstep + qi + cin
        cin = (r.state == State.STEP_END) if "zo" in self.modes else Const(0)
        step_sum = Cat(Const(1, 1), r.pstep) + Cat(cin, r.qi)
        m.d.comb += r.zo_step.eq(step_sum[1:])
        with m.Switch(r.state):
            self._control(m, r, State)
        self._execute(m, r, State, code)

        # abort (host or watchdog) overrides whatever the state machine chose
        with m.If(r.busy & (r.state != State.CHECK) & (r.state != State.ABORT)
                  & (self.abort | wd_fire)):
            m.d.comb += [self.errors.aborted.eq(self.abort),
                         self.errors.watchdog.eq(wd_fire & ~self.abort)]
            m.d.sync += r.state.eq(State.ABORT)
        return m

    def store_address(self, register):
        """Word of run register (or stored counter) ``register`` in the register bank's
        block RAM."""
        return self.store_words[register]

    def walk_bits(self):
        """Width of the first-order record walk: the cache's capacity's
        :func:`~.order.index_bits`."""
        return index_bits(self.cache.capacity)

    def _record_order(self, m, r):
        """The first-order record walk, keyed by the ``order`` register (read in CHECK's
        last cycle, when ``first`` is pulsed); the control states pulse its ``first``
        (start), ``mark`` (mini-batch start), ``rewind`` (a phase's restart at the batch's
        first sample) and ``next_epoch``."""
        order = RecordOrder(self.walk_bits())
        m.d.comb += [order.seed.eq(r.word("order_seed")), order.count.eq(r.train_n),
                     order.shuffle.eq(r.shuffle), order.next_epoch.eq(r.next_epoch)]
        return order

    def _results(self, m, r):
        """Takes the loss unit's results (:meth:`_tally`); counts those outstanding and, in
        zeroth order, the results of the current query (``res_n``; the query sum is stored
        with its last). Returns the "a result was taken" strobe."""
        last = Signal()             # the result is its query's last of 2 nb (zeroth order)
        n = Signal.like(r.res_n)
        m.d.comb += n.eq(r.res_n + 1)
        if "zo" in self.modes:
            m.d.comb += last.eq((r.mode == Mode.ZO) & (n == Cat(0, r.nb)))
        got = self._tally(m, r, last)
        m.d.sync += r.outstanding.eq(r.outstanding + r.issued_out - got)
        if "zo" in self.modes:
            with m.If(got & (r.mode == Mode.ZO)):
                with m.If(last):
                    m.d.sync += [r.res_n.eq(0), r.res_q.eq(r.res_q + 1)]
                with m.Else():
                    m.d.sync += r.res_n.eq(n)
        return got

    def _tally(self, m, r, last):
        """Adds each result to the counters in the register bank's block RAM
        (:data:`STORED_COUNTERS`) with one saturating adder. A result takes a step per word
        of ``reads`` below: the word is read when no control state reads the memory (theirs
        go first: ``claimed``), and the cycle after it is written back plus the result's
        share (``rdata + share``, saturating at all ones); the result is taken (``ready``)
        with the last write. Zeroth order: the first step reads the zero word and writes
        ``0 + zo_sum`` to query ``res_q``'s scratch word if ``last`` (the query's last
        result: ZU_WAIT reads it once ``res_q`` has passed). The three cycles after an
        accepted start (``clear``) write 0 to the counters, before any result can arrive
        (a bus read meanwhile still sees the last run's). Held-out results (early stop) are
        taken at once. Timing: a result is taken 4 cycles (3 without zeroth order) after it
        arrives, later while control states read the memory; the watchdog does not count
        those cycles (it reads its budget only when the memory is free)."""
        store, res = self.store, self.result.payload
        words = [self.store_address(c) for c in ("samples", "correct", "loss_sum")]
        shares = [Const(1), res.correct, res.loss]
        reads, writes = list(words), list(words)
        if "zo" in self.modes:
            reads.insert(0, self.zero_word)
            writes.insert(0, self.scratch_base | r.res_q)
            shares.insert(0, res.zo_sum.as_signed())
        steps = len(reads)
        cnt = Signal(range(steps + 1), name="tally_reads")    # words read for the result
        pend = Signal(name="tally_pend")        # word cnt - 1 was read last cycle
        clearing = r.clear != 0
        k = Signal(range(steps), name="tally_write")          # the word written
        m.d.comb += k.eq(Mux(clearing, r.clear + (steps - 4), cnt - 1))
        share = Signal(COUNTER_WIDTH)
        for i, (share_i, waddr) in enumerate(zip(shares, writes)):
            with m.If(k == i):
                m.d.comb += [share.eq(share_i), store.waddr.eq(waddr)]
        m.d.comb += store.wdata.eq(Mux(clearing, 0, _sat_add(store.rdata, share)))
        m.d.comb += store.wen.eq(clearing | (pend & ((k != 0) | last if steps == 4 else 1)))
        with m.If(clearing):
            m.d.sync += r.clear.eq(r.clear - 1)

        tally = self.result.valid & ~clearing
        if self.early_stop:
            tally = tally & ~r.ho
        with m.If(tally & (cnt < steps) & ~r.claimed):
            m.d.comb += store.ren.eq(1)
            for i, raddr in enumerate(reads):
                with m.If(cnt == i):
                    m.d.comb += store.raddr.eq(raddr)
            m.d.sync += [cnt.eq(cnt + 1), pend.eq(1)]
        with m.Else():
            m.d.sync += pend.eq(0)
        done = pend & (cnt == steps)
        with m.If(done | ~self.result.valid):       # taken, or gone (a flush)
            m.d.sync += cnt.eq(0)
        m.d.comb += self.result.ready.eq(Mux(r.ho, 1, done) if self.early_stop else done)
        got = Signal()
        m.d.comb += got.eq(self.result.valid & self.result.ready)
        return got

    def _counters(self, m, r, got):
        """The run's counters in flip-flops (saturating; cleared at every accepted start,
        see CHECK); ``epochs`` and ``steps`` are the loops' counters (never saturating:
        :func:`counter_widths`). The others are in block RAM (:meth:`_tally`)."""
        c, res, clear = self.counters, self.result.payload, self.accepted
        if self.early_stop:     # the held-out forwards count apart (_held_out)
            _count(m, r.ho_count, got & r.ho & res.correct,
                   clear | (r.state == r.State.HO_START), saturate=False)
        _count(m, c.cycles, r.busy & (r.state != r.State.CHECK), clear)
        # the abort's flush cycles, 0 outside ABORT (a synchronous reset: no multiplexer)
        aborting = r.state == r.State.ABORT
        _count(m, r.flush_count, aborting, ~aborting, saturate=False)
        _count(m, c.epochs, r.next_epoch, clear, saturate=False)
        _count(m, c.steps, r.next_step, clear, saturate=False)

    def _watchdog(self, m, r):
        """Counts a watched run's (FO, ZO, EVAL) cycles without a datapath transfer; fires
        in the ``watchdog``-th such cycle in a row. ``wd`` holds the count *including* the
        current cycle (from 1: a synchronous set/reset, no multiplexer: a reload of the
        budget would take one per bit), so the comparison reads the register and the
        incrementer feeds only its flip-flops (they share its cells). The budget is the run
        register's word, which the block RAM reads whenever nothing else is read: a cycle in
        which it is not there (a state, the counters or the bus read another word) does not
        count."""
        State = r.State
        watched = r.busy & (r.state != State.CHECK) & (r.state != State.ABORT) \
            & ((r.mode == Mode.FO) | (r.mode == Mode.ZO) | (r.mode == Mode.EVAL))
        parked = Signal()               # last cycle's read was the watchdog's word
        m.d.sync += parked.eq(~self.store.ren)
        budget = Signal()               # ... and the bus did not take the memory
        m.d.comb += budget.eq(parked & self.store.rvalid)
        with m.If(~watched | self.progress):
            m.d.sync += r.wd.eq(1)
        with m.Elif(budget):
            m.d.sync += r.wd.eq(r.wd + 1)
        fire = Signal()          # the budget's last cycle without a transfer
        m.d.comb += fire.eq(watched & budget & (r.wd == r.word("watchdog")) & ~self.progress)
        return fire

    def _control(self, m, r, State):
        """The control states: start and its checks, the loops between program bodies,
        completion and abort."""
        records = r.records
        with m.Case(State.IDLE):
            # the memory reads the mode word meanwhile: the run's mode is known at once (the
            # SoC's weight window must not answer a LOAD or DUMP run's first access with err)
            m.d.comb += self.store.raddr.eq(self.store_address("mode"))
            with m.If(self.start):
                m.d.comb += r.read(self.check_order[0])
                m.d.sync += [records.eq(self.records), self.done.eq(0), r.chk.eq(0),
                             r.bad.eq(0), r.mode.as_value().eq(r.word("mode")),
                             r.state.eq(State.CHECK)]
        with m.Case(State.CHECK):
            # every flag driven here, also those this design never raises (driven only by a
            # constant, a Verilog simulator's `always @*` would never run and show x)
            m.d.comb += self.errors.eq(0)
            self._check(m, r, State)
        with m.Case(State.EV_START):
            first, count = r.word("eval_first"), r.word("eval_count")
            m.d.sync += [*r.enter("EV"), *r.begin_phase(), r.base.eq(first),
                         r.nb.eq(count)]
        with m.Case(State.DRAIN):
            with m.If((r.outstanding == 0) & self.mac_idle & self.datapath_idle
                      & ~self.engine_busy):
                m.d.sync += [self.done.eq(1), r.state.eq(State.IDLE)]
        with m.Case(State.ABORT):
            m.d.comb += self.flush.eq(1)
            with m.If(r.flush_count == self.flush_cycles - 1):
                m.d.sync += [self.done.eq(1), r.outstanding.eq(0),
                             r.state.eq(State.IDLE)]

        if "fo" in self.modes:
            self._control_fo(m, r, State)
        if "zo" in self.modes:
            self._control_zo(m, r, State)

    def _check(self, m, r, State):
        """CHECK: the run registers of :attr:`check_order`, one a cycle (``chk``: the word on
        ``rdata``), each checked as it arrives (:meth:`_check_word`; a flag is strobed at
        once and remembered in ``bad``); what the run needs all along is kept (mode, log2
        of batch and queries, shifts, seed, shuffle). In the last word's cycle the run is
        accepted if nothing was flagged, and the first state that needs more reads it."""
        last = len(self.check_order) - 1
        r.over = self._records_compare(m, r)
        with m.Switch(r.chk):
            for k, register in enumerate(self.check_order):
                with m.Case(k):
                    if k < last:
                        m.d.comb += r.read(self.check_order[k + 1])
                    else:   # what the first state of an accepted ZO or EVAL run reads
                        m.d.comb += r.read_either(r.mode == Mode.ZO, "zo_step", "eval_range")
                    flags = self._check_word(m, r, register)
                    for name, bad in flags.items():
                        m.d.comb += getattr(self.errors, name).eq(bad)
                    now = Cat(*flags.values()).any() if flags else Const(0)
                    if k < last:
                        m.d.sync += [r.chk.eq(k + 1), r.bad.eq(r.bad | now)]
                    else:
                        with m.If(r.bad | now):
                            m.d.sync += [self.done.eq(1), r.state.eq(State.IDLE)]
                        with m.Else():
                            self._accept(m, r, State)

    def _records_compare(self, m, r):
        """One comparator against the records for CHECK's batch, cursor and evaluation-range
        words (each field from bit 0 of its word): ``a + b + c > records``, ``a`` the word's
        field (``batch``, ``cursor``, ``eval_first``), ``b`` the evaluation count (its word
        only), ``c`` 1 for the cursor (``cursor >= records``); the fields' bits above the
        records' width are ORed, not compared."""
        w, rdata = len(r.records), self.store.rdata
        fields = {"batch": "batch", "zo_cursor": "cursor", "eval_range": "eval_first"}
        at = {reg: r.chk == self.check_order.index(reg) for reg in fields}
        hi = Const(0)
        for reg, name in fields.items():
            assert run_field_lsb(name) == 0, name
            hi = hi | (at[reg] & rdata[w:RUN_FIELDS[name].width].any())
        lsb = run_field_lsb("eval_count")
        hi = hi | (at["eval_range"] & rdata[lsb + w:lsb + RUN_FIELDS["eval_count"].width].any())
        b = Mux(at["eval_range"], rdata[lsb:lsb + w], 0)
        over = Signal(name="check_over")
        m.d.comb += over.eq(hi | (rdata[:w] + b + at["zo_cursor"] > r.records))
        return over

    def _check_word(self, m, r, register):
        """The checks of run register ``register``'s word (on ``rdata``) and what the run
        keeps of it; returns ``{error: strobe}``."""
        mac, records, mode = self.mac, r.records, r.mode
        is_fo, is_zo, is_ev = mode == Mode.FO, mode == Mode.ZO, mode == Mode.EVAL
        word, f = r.word, RUN_FIELDS
        c_fo, _, c_zo, k0 = coef_shift_constants(mac, self.loss)
        flags = {}
        if register == "mode":
            value = word("mode")
            m.d.sync += r.mode.as_value().eq(value)
            flags["bad_mode"] = ((value > Mode.DUMP.value)
                                 | ((value == Mode.FO) & ("fo" not in self.modes))
                                 | ((value == Mode.ZO) & ("zo" not in self.modes)))
        elif register == "early_stop":
            every, holdout, patience = word("stop_every"), word("holdout"), word("patience")
            m.d.sync += [r.stop_every.eq(every), r.holdout.eq(holdout),
                         r.patience.eq(patience)]
            flags["bad_schedule"] = is_fo & ((every > f["stop_every"].hi)
                                             | (patience < f["patience"].lo)
                                             | (patience > f["patience"].hi)
                                             | (holdout > f["holdout"].hi)
                                             | ((every != 0) & (holdout == 0)))
        elif register == "batch":
            batch = word("batch")
            lb = _log2(m, batch)
            m.d.sync += r.lb.eq(lb)
            # the training records (records - holdout) hold a mini-batch at least
            over = (batch + r.holdout > records) if self.early_stop else r.over
            if self.early_stop:
                over = Mux(is_fo, over, batch > records)
            flags["bad_batch"] = ((is_fo & ~_pow2_upto(batch, mac.max_batch))
                                  | (is_zo & ~_pow2_upto(batch, MAX_BATCH)))
            flags["batch_count"] = (is_fo | is_zo) & over
        elif register == "queries":
            queries = word("queries")
            lq = _log2(m, queries)
            m.d.sync += r.lq.eq(lq)
            flags["bad_steps"] = is_zo & ~_pow2_upto(queries, MAX_QUERIES)
        elif register == "shifts":
            # the shifts of the run's ops, from the log2 of batch and queries read before
            eps = word("eps_shift")
            cs = Signal(signed(9), name="check_cs")
            cs_z = Signal(signed(9), name="check_cs_z")
            k = Signal(signed(7), name="check_k")
            m.d.comb += [cs.eq(c_fo - r.lb - word("lr_shift")),
                         cs_z.eq(c_zo - word("zo_lr_shift") - r.lb - r.lq + eps),
                         k.eq(k0 - eps)]
            m.d.sync += [r.cs.eq(cs), r.cs_z.eq(cs_z), r.k.eq(k)]
            # with the schedule, the learning-rate steps lower FO's shift further: checked
            # again with them (lr_steps_hi)
            fo_bad = (cs > CSHIFT_MAX) | (cs < CSHIFT_MIN)
            flags["bad_shift"] = ((is_fo & fo_bad)
                                  | (is_zo & ((k < 0) | (cs_z < CSHIFT_MIN)
                                              | (cs_z > CSHIFT_MAX))))
        elif register == "epochs":
            flags["zero_epochs"] = is_fo & (word("epochs") == 0)
        elif register == "steps":
            flags["bad_steps"] = is_zo & (word("steps") == 0)
        elif register == "zo_cursor":
            flags["bad_cursor"] = is_zo & r.over
        elif register == "eval_range":
            count = word("eval_count")
            flags["eval_range"] = is_ev & ((count == 0)
                                           | r.over)
        elif register == "watchdog":
            flags["bad_watchdog"] = (is_fo | is_zo | is_ev) & (word("watchdog") == 0)
        elif register == "seed":
            m.d.sync += r.seed.eq(word("seed"))
        elif register in ("lr_steps_lo", "lr_steps_hi"):
            n = r.lr_steps(lambda step: step != 0)
            if not self.schedule:
                flags["bad_schedule"] = is_fo & (n != 0)
            elif register == "lr_steps_lo":
                m.d.sync += r.n_steps.eq(n)
            else:
                # every learning-rate step counts, even one past the last epoch
                flags["bad_shift"] = is_fo & (r.cs - (r.n_steps + n) < CSHIFT_MIN)
        elif register == "order":
            m.d.sync += r.shuffle.eq(word("order"))
            if not self.schedule:
                flags["bad_schedule"] = is_fo & word("order")
        return flags

    def _accept(self, m, r, State):
        """The run is accepted (CHECK's last cycle, the ``order`` word on ``rdata``)."""
        m.d.comb += self.accepted.eq(1)
        m.d.sync += [r.outstanding.eq(0), r.qi.eq(0), r.res_n.eq(0), r.res_q.eq(0),
                     r.clear.eq(3)]
        if self.early_stop:
            m.d.sync += [r.ho.eq(0), r.since.eq(0), r.best1.eq(0), r.strikes.eq(0),
                         self.stop.eq(0)]
        with m.Switch(r.mode):
            if "fo" in self.modes:
                with m.Case(Mode.FO):
                    if r.order is not None:
                        m.d.comb += r.order.first.eq(1)
                    m.d.sync += [r.base.eq(0), r.state.eq(State.FO_BATCH)]
            if "zo" in self.modes:
                with m.Case(Mode.ZO):
                    m.d.sync += r.state.eq(State.ZO_LOAD)
            with m.Case(Mode.EVAL):
                m.d.sync += r.state.eq(State.EV_START)
            with m.Case(Mode.LOAD):
                m.d.sync += r.enter("LD")
            with m.Default():
                m.d.sync += r.enter("DP")

    def _control_fo(self, m, r, State):
        """First order: a mini-batch at a time, epochs over the records; at an epoch's end
        FO_EPOCH reads the learning-rate steps (``chk`` 0, 1: each reached lowers the shift)
        and the epoch count (``chk`` 2)."""
        records, batch = r.train_n, r.batch
        left = records - r.base
        with m.Case(State.FO_BATCH):
            if r.order is not None:
                m.d.comb += r.order.mark.eq(1)
            m.d.sync += [r.nb.eq(Mux(left < batch, left, batch)), *r.enter("FO"),
                         *r.begin_phase()]
        first_read = 0 if self.schedule else 2
        epoch_words = ("lr_steps_lo", "lr_steps_hi", "epochs")
        with m.Case(State.FO_NEXT):
            m.d.comb += r.next_step.eq(1)
            nxt = r.base + batch
            m.d.comb += r.read(epoch_words[first_read])     # used at an epoch's end
            with m.If(nxt >= records):
                # the epochs counter is the loop counter (it cannot saturate: counter_widths)
                m.d.comb += r.next_epoch.eq(1)
                m.d.sync += [r.base.eq(0), r.chk.eq(first_read), r.state.eq(State.FO_EPOCH)]
            with m.Else():
                m.d.sync += [r.base.eq(nxt), r.state.eq(State.FO_BATCH)]
        with m.Case(State.FO_EPOCH):
            epoch = self.counters.epochs            # the epoch just begun, from 1
            width = RUN_FIELDS["lr_step0"].width
            if self.schedule:
                with m.If(r.chk != 2):
                    # eta halves once per learning-rate step reached (epoch < 2**10)
                    m.d.comb += r.read_either(r.chk == 0, "lr_steps_hi", "epochs")
                    m.d.sync += [r.cs.eq(r.cs - r.lr_steps(lambda s: s == epoch[:width])),
                                 r.chk.eq(r.chk + 1)]
            with m.If(r.chk == 2):
                last = epoch == r.word("epochs")
                after = Mux(last, State.DRAIN, State.FO_BATCH)
                if self.early_stop:
                    # every stop_every-th epoch the held-out records are evaluated
                    due = (r.stop_every != 0) & (r.since + 1 == r.stop_every)
                    m.d.sync += [r.since.eq(Mux(due, 0, r.since + 1)), r.last.eq(last)]
                    after = Mux(due, State.HO_START, after)
                m.d.sync += r.state.eq(after)
        if self.early_stop:
            self._control_held_out(m, r, State)

    def _control_held_out(self, m, r, State):
        """Early stop: once the epoch's results are in, the held-out records (``train_n``
        on, ``holdout`` of them) go through the HO program (an evaluation); once theirs are
        in, the count is judged (a new best clears the strikes, anything else is one) and
        the run goes on, or ends after ``patience`` strikes or the last epoch."""
        with m.Case(State.HO_START):
            with m.If(r.outstanding == 0):
                m.d.sync += [r.ho.eq(1), r.base.eq(r.train_n), r.nb.eq(r.holdout),
                             *r.enter("HO"), *r.begin_phase()]
        with m.Case(State.HO_DONE):
            with m.If(r.outstanding == 0):
                better = r.ho_count >= r.best1              # count > best (best1 = best + 1)
                strikes = Signal.like(r.strikes)
                m.d.comb += strikes.eq(Mux(better, 0, r.strikes + 1))
                stop = ~better & (strikes >= r.patience)
                m.d.sync += [r.ho.eq(0), r.base.eq(0), r.strikes.eq(strikes),
                             self.stop.correct.eq(r.ho_count), self.stop.stopped.eq(stop),
                             r.state.eq(Mux(stop | r.last, State.DRAIN, State.FO_BATCH))]
                with m.If(better):
                    m.d.sync += r.best1.eq(r.ho_count + 1)

    def _held_out(self, m, r):
        """Early stop's registers: the training records end where the held-out ones begin."""
        m.d.comb += r.train_n.eq(r.records - r.holdout)

    def _control_zo(self, m, r, State):
        """Zeroth order: the run's first step and cursor (ZO_LOAD, ZO_CURSOR), then per step
        the queries' forwards, then per query its update; STEP_END reads the step budget."""
        records, batch = r.records, r.batch
        left = records - r.base
        queries = Const(1, MAX_QUERIES.bit_length()) << r.lq
        with m.Case(State.ZO_LOAD):
            m.d.comb += r.read("zo_cursor")
            m.d.sync += [r.pstep.eq(r.word("step")), r.state.eq(State.ZO_CURSOR)]
        with m.Case(State.ZO_CURSOR):
            m.d.sync += [r.base.eq(r.word("cursor")), r.state.eq(State.ZO_STEP)]
        with m.Case(State.ZO_STEP):
            m.d.sync += [r.nb.eq(Mux(left < batch, left, batch)), r.qi.eq(0), r.res_n.eq(0),
                         r.res_q.eq(0), *r.enter("ZF"), *r.begin_phase()]
        with m.Case(State.ZF_NEXT):
            m.d.sync += r.begin_phase()
            with m.If(r.qi + 1 == queries):
                m.d.sync += [r.qi.eq(0), r.state.eq(State.ZU_WAIT)]
            with m.Else():
                m.d.sync += [r.qi.eq(r.qi + 1), *r.enter("ZF")]
        with m.Case(State.ZU_WAIT):
            # the query's sum is read (the MAC op's immediate) once stored
            with m.If(r.res_q > r.qi):
                m.d.comb += [r.claimed.eq(1), self.store.ren.eq(1),
                             self.store.raddr.eq(self.scratch_base | r.qi)]
                m.d.sync += r.state.eq(State.ZU_READ)
        with m.Case(State.ZU_READ):
            m.d.sync += [r.g.eq(self.store.rdata), *r.enter("ZU")]
        with m.Case(State.ZU_NEXT):
            m.d.comb += r.read("steps")                     # used at the step's end
            with m.If(r.qi + 1 == queries):
                m.d.sync += r.state.eq(State.STEP_END)
            with m.Else():
                m.d.sync += [r.qi.eq(r.qi + 1), r.state.eq(State.ZU_WAIT)]
        with m.Case(State.STEP_END):
            # the steps counter is the loop counter (it cannot saturate: counter_widths)
            m.d.comb += r.next_step.eq(1)
            m.d.sync += r.pstep.eq(r.zo_step)
            nxt = r.base + batch
            with m.If(nxt >= records):
                m.d.comb += r.next_epoch.eq(1)
                m.d.sync += r.base.eq(0)
            with m.Else():
                m.d.sync += r.base.eq(nxt)
            m.d.sync += r.state.eq(Mux(self.counters.steps + 1 == r.word("steps"),
                                       State.DRAIN, State.ZO_STEP))


    def _execute(self, m, r, State, code):
        """The micro-coded engine (state ``EXEC``): drive the action of the word at ``pc`` on
        its stream; when it is taken, go to the next word, back to the phase's first word for
        the batch's next sample, or (after a program's last word) to the control state the
        word names. Only the streams' ``valid`` (and what follows from a transfer) depend on
        the state: the payloads are driven in every state (in the state's case they would be
        gated to 0 outside it, a LUT per payload bit)."""
        word = Signal(code.layout())
        with m.Switch(r.pc):
            for address, value in enumerate(code.rom()):
                with m.Case(address):
                    m.d.comb += word.eq(value)

        def field(name, resolve=lambda v: v):
            """The value of word field ``name`` (a constant, or a mux among its values)."""
            values = code.values[name]
            if len(values) == 1:
                return resolve(values[0])
            out = Signal(Shape.cast(_shape_of(values, resolve)), name=f"w_{name}")
            with m.Switch(word[name]):
                for i, v in enumerate(values):
                    with m.Case(i):
                        m.d.comb += out.eq(resolve(v))
            return out

        kind = field("kind", lambda k: ("mac", "fetch", "zreq").index(k))
        dyn = (lambda v: r.dynamic[v] if isinstance(v, Dynamic) else v)
        mac, fetch, zreq = self.mac_cmd, self.fetch, self.zreq
        running = r.state == State.EXEC
        is_fo = r.mode == Mode.FO
        if self.early_stop:         # the held-out records are read in cache order
            is_fo = is_fo & ~r.ho
        if r.order is not None:
            # first order fetches the record walk's indices (it replays each mini-batch)
            idx = r.order.index
            m.d.comb += [fetch.valid.eq(running & (kind == 1) & (~is_fo | idx.valid)),
                         idx.ready.eq(running & (kind == 1) & is_fo & fetch.ready),
                         fetch.payload.index.eq(Mux(is_fo, idx.payload, r.sample))]
        else:
            m.d.comb += [fetch.valid.eq(running & (kind == 1)),
                         fetch.payload.index.eq(r.sample)]
        m.d.comb += [mac.valid.eq(running & (kind == 0)), zreq.valid.eq(running & (kind == 2))]
        for name in MacOp.__dataclass_fields__:
            if name in code.values:
                m.d.comb += getattr(mac.payload, name).eq(field(name, dyn))
        m.d.comb += [fetch.payload.first.eq(r.n == 0),
                     zreq.payload.seed.eq(r.seed), zreq.payload.step.eq(r.zo_step)]
        if "forward" in code.values:
            m.d.comb += [fetch.payload.forward.eq(field("forward")),
                         fetch.payload.zo.eq(field("sign"))]
        taken = Signal()
        m.d.comb += taken.eq((mac.valid & mac.ready) | (fetch.valid & fetch.ready)
                             | (zreq.valid & zreq.ready))
        m.d.comb += r.issued_out.eq(mac.valid & mac.ready & field("results"))

        pc = r.pc
        phase_end, each, prog_end = field("phase_end"), field("each"), field("prog_end")
        then = field("then", lambda t: State[t])
        with m.If(taken):
            with m.If(~phase_end):
                m.d.sync += pc.eq(pc + 1)
            with m.Elif(each & (r.n + 1 < r.nb)):
                m.d.sync += [pc.eq(field("restart")), *r.next_sample()]
            with m.Else():
                m.d.sync += [pc.eq(pc + 1), *r.begin_phase()]
                if r.order is not None:     # the next phase reads the batch again
                    m.d.comb += r.order.rewind.eq(~prog_end)
                with m.If(prog_end):
                    m.d.sync += r.state.eq(then)

class _RunState:
    """The sequencer's registers during a run, sized by the design (not by the register
    map): sample indices by the cache capacity, coefficient bases by the MAC array's
    coefficient memory, the program counter by the micro-code. Of the run registers only
    what the run needs all along is kept (``mode``, ``lb``/``lq``: log2 of batch and
    queries, the shifts, ``seed``, ``shuffle``); the others are read from the register
    bank's block RAM when used (:meth:`read`, then :meth:`word` the cycle after)."""

    def __init__(self, seq, State, code):
        cache = seq.cache
        self.seq = seq
        self.State = State
        self.state = Signal(State)
        self.code = code
        #: Micro-code address; its values are named after the actions (waveforms).
        self.pc = Signal(enum.Enum("MicroAddress", [(n, i) for i, n in enumerate(code.names)]))
        self.busy = Signal()
        self.mode = Signal(Mode)
        self.chk = Signal(range(max(3, len(seq.check_order))))   # CHECK's word; FO_EPOCH's
        self.bad = Signal()             # CHECK flagged something
        self.lb = Signal(range(RUN_FIELDS["batch"].width))
        self.lq = Signal(range(RUN_FIELDS["queries"].width))
        self.batch = Signal(RUN_FIELDS["batch"].width)      # 2 ** lb
        self.seed = Signal(RUN_FIELDS["seed"].width)
        self.shuffle = Signal()
        self.n_steps = Signal(range(LR_STEPS_MAX + 1))       # learning-rate steps set
        self.order = None               # the first-order record walk (designs with FO)
        self.records = Signal(range(cache.capacity + 1))
        #: Records trained on (first order): all, or those before the held-out slice.
        self.train_n = self.records
        holdout = RUN_FIELDS["holdout"]
        self.holdout = Const(0)
        if seq.early_stop:
            held = range(holdout.hi + 2)
            self.train_n = Signal(range(cache.capacity + 1))
            self.ho = Signal()                  # the held-out records are being evaluated
            self.ho_count = Signal(held)        # ... and so many classified right
            self.best1 = Signal(held)           # best count so far + 1 (0: none yet)
            self.strikes = Signal(range(RUN_FIELDS["patience"].hi + 1))
            self.since = Signal(RUN_FIELDS["stop_every"].width)    # epochs since evaluation
            self.last = Signal()                # the epoch evaluated is the run's last
            self.stop_every = Signal(RUN_FIELDS["stop_every"].width)
            self.holdout = Signal(holdout.width)
            self.patience = Signal(RUN_FIELDS["patience"].width)
        # every index is checked at start against the records (at most the capacity)
        index = range(max(cache.capacity, MAX_BATCH) + 1)
        self.base = Signal(index)       # FO: batch start; ZO: cursor; EVAL: first record
        self.nb = Signal(index)         # samples in the current batch / range
        self.n = Signal(index)          # sample within the phase
        self.sample = Signal(index)     # base + n (combinational)
        # first order's coefficient bases of sample n, combinational (a mini-batch holds at
        # most mac.max_batch samples; other programs' wrap harmlessly)
        fo_batch = seq.mac.max_batch
        self.cb = Signal(range(fo_batch * seq.mac.classes))         # n * classes: dz of n
        self.vb = Signal(range(max(2, seq.layout.v_base + fo_batch * seq.layout.inner)))
        self.v_base = seq.layout.v_base                             # v_base + n * inner
        self.classes, self.inner = seq.mac.classes, seq.layout.inner
        self.qi = Signal(range(MAX_QUERIES + 1))
        self.pstep = Signal(RUN_FIELDS["step"].width)
        self.zo_step = Signal(RUN_FIELDS["step"].width)   # pstep + qi: the query's step
        self.g = Signal(signed(zo_sum_width(seq.loss)))
        # MATVEC results not yet through the loss unit: the MAC array reserves a MATVEC's
        # results in its out FIFO before issuing it, so few are ever in flight
        self.outstanding = Signal(range(64))
        self.issued_out = Signal()      # a MATVEC with results on `out` was accepted
        self.next_epoch = Signal()      # strobes: count an epoch / a step
        self.next_step = Signal()
        self.res_n = Signal(range(2 * MAX_BATCH + 1))
        self.res_q = Signal(range(MAX_QUERIES + 1))
        # cycles without progress, the current one included (the budget is at least 1)
        self.wd = Signal(RUN_FIELDS["watchdog"].width, init=1)
        self.claimed = Signal()         # a control state reads the block RAM (goes first)
        self.over = None                # CHECK's comparison against the records
        self.clear = Signal(range(4))   # stored counters still to clear after a start
        self.flush_count = Signal(range(seq.flush_cycles + 1))
        # the ops' shifts, as wide as the ops' fields (CHECK keeps every one in range, the
        # learning-rate steps included)
        self.cs = Signal(signed(6))             # first order's cshift (the epoch's)
        self.cs_z = Signal(signed(6))           # zeroth order's cshift
        self.k = Signal(5)                      # zeroth order's zshift
        self.dynamic = {Dynamic.FO_CSHIFT: self.cs, Dynamic.ZO_CSHIFT: self.cs_z,
                        Dynamic.ZSHIFT: self.k, Dynamic.COEF_BASE: self.cb,
                        Dynamic.V_BASE: self.vb, Dynamic.GRADIENT: self.g}

    def read(self, register):
        """Statements that read run register ``register`` (its word on ``rdata`` the
        cycle after)."""
        store = self.seq.store
        return [self.claimed.eq(1), store.ren.eq(1),
                store.raddr.eq(self.seq.store_address(register))]

    def read_either(self, which, first, second):
        """Statements that read run register ``first`` if ``which``, else ``second``."""
        store, address = self.seq.store, self.seq.store_address
        return [self.claimed.eq(1), store.ren.eq(1),
                store.raddr.eq(Mux(which, address(first), address(second)))]

    def word(self, name):
        """Run field ``name`` of the word on ``rdata`` (its register's, read the cycle
        before)."""
        lsb = run_field_lsb(name)
        return self.seq.store.rdata[lsb:lsb + RUN_FIELDS[name].width]

    def lr_steps(self, predicate):
        """How many of the two learning-rate step fields of the word on ``rdata``
        (``lr_steps_lo`` or ``_hi``: the same layout) meet ``predicate``."""
        return sum(predicate(self.word(f"lr_step{i}")).as_unsigned() for i in range(2))

    def enter(self, program):
        """Statements that start ``program`` at its first word."""
        address = self.code.entry[program]
        return [self.pc.eq(address),
                self.state.eq(self.State.EXEC)]

    def begin_phase(self):
        """Statements that restart a phase at the first sample of the batch."""
        return [self.n.eq(0)]

    def next_sample(self):
        """Statements that move a phase on to the batch's next sample."""
        return [self.n.eq(self.n + 1)]


def _shape_of(values, resolve):
    """The shape holding every value of a word field once resolved (constants and
    signals)."""
    shapes = []
    for v in values:
        v = resolve(v)
        if isinstance(v, py_enum.Enum) and not isinstance(v, (int,)):
            shapes.append(Shape.cast(type(v)))
        elif isinstance(v, int):
            shapes.append(Const.cast(v).shape())
        else:
            shapes.append(Value.cast(v).shape())
    width = max(s.width + (1 if (not s.signed and any(t.signed for t in shapes)) else 0)
                for s in shapes)
    return signed(width) if any(t.signed for t in shapes) else unsigned(width)

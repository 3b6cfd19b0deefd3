"""Parameters of the adapter MAC array and weight memory (TOML table ``[mac]``)."""

from dataclasses import dataclass

from ..params import (Params, check_int, check_choice, check_bool, check_taps, R1_TAPS,
                      R1_CLASSES)


__all__ = ["MacParams", "ADAPTERS", "ACC_MEMORIES", "PERTURB_SHIFTERS"]


#: Adapter kinds: dense (classes x features per tap) or low-rank (LoRA style, B = 0 at start).
ADAPTERS = ("dense", "lowrank")

#: Where the row accumulators live: flip-flops, or a block RAM (``acc_width`` bits a row: 3
#: SB_RAM40_4K at 40 bits, 1 DP16KD).
ACC_MEMORIES = ("flops", "bram")

#: How a perturbation is shifted by its op's ``zshift``: a shifter in logic, or a multiplier
#: by ``2**zshift`` per lane (a second SB_MAC16 per lane).
PERTURB_SHIFTERS = ("logic", "multipliers")


@dataclass(frozen=True)
class MacParams(Params):
    """MAC array configuration.

    Parameters
    ----------
    lanes : int
        Multipliers, 1 to 64. Features arrive ``lanes`` per beat, so the taps must add up to a
        multiple of ``lanes`` (dense) or each be a multiple of it (low-rank).
    feature_width, feature_frac : int
        Feature operand, signed ``Q(feature_width-feature_frac).feature_frac`` (the forward
        cache's dequantizer output). Results of matrix-vector products (logits, low-rank
        intermediates ``u``) have the same format.
    weight_width, weight_frac : int
        Adapter weights, signed ``Q(weight_width-weight_frac).weight_frac``; stored and used as
        the multiplier operand as they are.
    acc_width : int
        Accumulator width; validation proves the configured dimensions cannot overflow it.
    adapter : str
        One of :data:`ADAPTERS`.
    rank : int
        Rank per tap of low-rank adapters, 1 to 16.
    taps : tuple of int
        Features per adapter tap.
    classes : int
        Output logits.
    max_batch : int
        Mini-batch slots of the coefficient memory (one ``dz`` vector, and for low-rank one
        ``v = B^T dz`` vector, per sample of a mini-batch), 1 to 256.
    perturb_width, perturb_frac : int
        Perturbations from the perturbation engine, signed
        ``Q(perturb_width-perturb_frac).perturb_frac`` (``perturb.width``/``perturb.frac_bits``).
    coef_width : int
        Update coefficients (``dz``, ``v``, the zeroth-order step), signed, 8 to 18 bits; the
        second multiplier operand of updates.
    read_register : bool
        Register the weight memory's read data before any logic, and the stage-1 sum before
        its saturation: two more pipeline stages and about ``lanes * (2 * weight_width + 18)``
        flip-flops, for devices whose block RAM outputs are slow next to the clock period
        (ECP5 at 100 MHz); off for iCE40, where flip-flops are scarcer than time.
    acc_memory : str
        One of :data:`ACC_MEMORIES`: the matrix-vector row accumulators (``rows`` of
        ``acc_width`` bits) in flip-flops (they rotate: no multiplexer), or in a block RAM
        read a cycle before each word's sum arrives and written as it is added (same
        results, same timing; on the UP5K about 340 logic cells fewer for 3 SB_RAM40_4K).
        ``"bram"`` needs at least 2 rows in every region (low-rank: ``rank >= 2``), so a row
        is never read in the cycle it is written.
    perturb_shifter : str
        One of :data:`PERTURB_SHIFTERS`: each lane shifts its perturbation by the op's
        ``zshift`` in a shifter of logic (about 50 LUT4 a lane on iCE40), or multiplies it by
        ``2**zshift`` in a multiplier of its own (``2 * lanes`` multipliers in all: on the
        UP5K, whose 8 SB_MAC16 serve 4 lanes so, about 33 logic cells fewer a lane; same
        results, same timing).
    """

    section = "mac"

    lanes: int = 8
    feature_width: int = 16
    feature_frac: int = 8
    weight_width: int = 16
    weight_frac: int = 12
    acc_width: int = 40
    adapter: str = "dense"
    rank: int = 4
    taps: tuple = R1_TAPS
    classes: int = R1_CLASSES
    max_batch: int = 16
    perturb_width: int = 8
    perturb_frac: int = 5
    coef_width: int = 16
    read_register: bool = False
    acc_memory: str = "flops"
    perturb_shifter: str = "logic"

    def _validate(self):
        s = self.section
        check_int(s, "lanes", self.lanes, 1, 64)
        check_int(s, "feature_width", self.feature_width, 4, 18)
        check_int(s, "feature_frac", self.feature_frac, 0, self.feature_width - 1)
        check_int(s, "weight_width", self.weight_width, 4, 18)
        check_int(s, "weight_frac", self.weight_frac, 0, self.weight_width - 1)
        check_choice(s, "adapter", self.adapter, ADAPTERS)
        check_int(s, "rank", self.rank, 1, 16)
        object.__setattr__(self, "taps", check_taps(s, "taps", self.taps))
        check_int(s, "classes", self.classes, 2, 64)
        check_int(s, "max_batch", self.max_batch, 1, 256)
        check_int(s, "perturb_width", self.perturb_width, 4, 18)
        check_int(s, "perturb_frac", self.perturb_frac, 0, self.perturb_width - 2)
        check_int(s, "coef_width", self.coef_width, 8, 18)
        check_bool(s, "read_register", self.read_register)
        check_choice(s, "acc_memory", self.acc_memory, ACC_MEMORIES)
        check_choice(s, "perturb_shifter", self.perturb_shifter, PERTURB_SHIFTERS)
        if self.acc_memory == "bram" and self.adapter == "lowrank" and self.rank < 2:
            raise ValueError(f"{s}.acc_memory 'bram' needs {s}.rank >= 2 (a row read and "
                             f"written in one cycle), not {self.rank}")
        if self.adapter == "dense":
            if self.features % self.lanes:
                raise ValueError(f"{s}.taps must add up to a multiple of {s}.lanes "
                                 f"({self.lanes}), not {self.features}")
        else:
            for i, n in enumerate(self.taps):
                if n % self.lanes:
                    raise ValueError(f"{s}.taps[{i}] must be a multiple of {s}.lanes "
                                     f"({self.lanes}) for low-rank adapters, not {n}")
        if self.perturb_frac > self.weight_frac:
            raise ValueError(f"{s}.perturb_frac must be at most {s}.weight_frac "
                             f"({self.weight_frac}), not {self.perturb_frac}")
        # A dot product over n terms plus the frozen logit needs
        # feature_width + weight_width - 1 + ceil(log2(n + 1)) bits; demand it.
        need = self.feature_width + self.weight_width - 1 + max(self.dot_length, 1).bit_length()
        check_int(s, "acc_width", self.acc_width, need, 64)

    @property
    def features(self):
        return sum(self.taps)

    @property
    def dot_length(self):
        """Longest dot product the array computes."""
        if self.adapter == "dense":
            return max(self.features, self.classes)
        return max(max(self.taps), self.rank * len(self.taps), self.classes)

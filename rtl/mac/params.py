"""Parameters of the adapter MAC array and weight memory (TOML table ``[mac]``)."""

from dataclasses import dataclass

from ..params import Params, check_int, check_choice, check_taps, R1_TAPS, R1_CLASSES


__all__ = ["MacParams", "ADAPTERS"]


#: Adapter kinds: dense (classes x features per tap) or low-rank (LoRA style, B = 0 at start).
ADAPTERS = ("dense", "lowrank")


@dataclass(frozen=True)
class MacParams(Params):
    """MAC array configuration.

    Parameters
    ----------
    lanes : int
        Multipliers, 1 to 64.
    feature_width, feature_frac : int
        Feature operand, signed ``Q(feature_width-feature_frac).feature_frac``.
    weight_width, weight_frac : int
        Adapter weights, signed ``Q(weight_width-weight_frac).weight_frac``.
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
    """

    section = "mac"

    lanes: int = 8
    feature_width: int = 16
    feature_frac: int = 8
    weight_width: int = 16
    weight_frac: int = 12
    acc_width: int = 48
    adapter: str = "dense"
    rank: int = 4
    taps: tuple = R1_TAPS
    classes: int = R1_CLASSES

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
        # A dot product over `n` terms of two signed operands needs
        # feature_width + weight_width - 1 + ceil(log2(n)) bits; demand it.
        n = max(sum(self.taps), self.classes)
        need = self.feature_width + self.weight_width - 1 + max(n - 1, 1).bit_length()
        check_int(s, "acc_width", self.acc_width, need, 64)

    @property
    def features(self):
        return sum(self.taps)

"""Parameters of the softmax cross-entropy loss unit (TOML table ``[loss]``)."""

from dataclasses import dataclass

from ..params import Params, check_int, check_bool, R1_CLASSES


__all__ = ["LossParams"]


@dataclass(frozen=True)
class LossParams(Params):
    """Loss unit configuration.

    Parameters
    ----------
    classes : int
        Classes (logits per sample), 2 to 64.
    logit_width, logit_frac : int
        Logits, signed ``Q(logit_width-logit_frac).logit_frac``.
    prob_frac : int
        Fraction bits of probabilities and of ``dz = softmax - onehot``: probabilities are
        unsigned ``Q1.prob_frac``, ``dz`` is signed ``Q1.prob_frac`` (``prob_frac + 1`` bits),
        8 to 15.
    exp_bits : int
        Address bits of the ``2^-x`` and ``log2(1 + x)`` tables, 4 to 12.
    loss_frac : int
        Fraction bits of base-2 exponents and of the loss (in bits, unsigned), 8 to 16.
    serial : bool
        Multiply the logit differences by ``log2(e)`` with one adder, a constant bit per
        cycle (the first pass only: the ring keeps the exponents for the second), instead of
        a pipelined shift-and-add tree: about 135 LUT4 less, but about ``16 * classes``
        cycles per vector more (:meth:`~.unit.SoftmaxCrossEntropy.latency`). Right when a
        forward takes longer than that (the UP5K's 8 lanes: 280 cycles per R1 sample); the
        wide ECP5 presets turn it off.
    """

    section = "loss"

    classes: int = R1_CLASSES
    logit_width: int = 16
    logit_frac: int = 8
    prob_frac: int = 15
    exp_bits: int = 8
    loss_frac: int = 12
    serial: bool = True

    def _validate(self):
        s = self.section
        check_int(s, "classes", self.classes, 2, 64)
        check_int(s, "logit_width", self.logit_width, 8, 24)
        check_int(s, "logit_frac", self.logit_frac, 0, self.logit_width - 2)
        check_int(s, "prob_frac", self.prob_frac, 8, 15)
        check_int(s, "exp_bits", self.exp_bits, 4, 12)
        check_int(s, "loss_frac", self.loss_frac, self.exp_bits, 16)
        check_bool(s, "serial", self.serial)

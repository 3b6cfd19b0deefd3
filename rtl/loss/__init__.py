"""Softmax cross-entropy loss unit."""

from .params import LossParams
from .unit import SoftmaxCrossEntropy, ZOSign, loss_command_layout, loss_result_layout


__all__ = ["LossParams", "SoftmaxCrossEntropy", "ZOSign", "loss_command_layout",
           "loss_result_layout", "from_config"]


def from_config(config):
    """The loss unit of a :class:`~fieldtune.config.DesignConfig` (``fieldtune generate loss``)."""
    return SoftmaxCrossEntropy(config.loss)

"""One-hot state encoding for the host link's state machines."""

__all__ = ["one_hot"]


def one_hot(fsm):
    """Ask Yosys to encode ``fsm`` (what ``with m.FSM() as fsm`` gives) one-hot: one flip-flop
    per state, so a state test is one flip-flop and no decode (the decoder: 481 instead of
    500 logic cells on the UP5K). Yosys then ignores the state's initial value, so a design
    that uses it must be reset after configuration (:class:`~fieldtune.boards.top.BoardTop`'s
    reset synchronizer holds ``sync`` in reset until the PLL locks); simulation is
    unaffected (the encoding is the synthesizer's)."""
    fsm.state.attrs["fsm_encoding"] = "one-hot"
    return fsm

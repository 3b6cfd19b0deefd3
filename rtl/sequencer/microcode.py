"""The sequencer's programs compiled to micro-code: one ROM word per action.

:func:`compile_programs` turns the typed programs of :mod:`.programs` into a
:class:`Microcode`: the words in program order (each program's entry address), and per word
field the distinct values the programs use. A word stores, for each field, the *index* of
its value in that field's table, so a field the programs always set alike takes no ROM bit,
and a field with a run-time value (:class:`~.programs.Dynamic`: a shift, a coefficient base,
the zeroth-order gradient) costs one multiplexer among the few values it takes. The ROM is
small (a few tens of words of a few tens of bits) and is read combinationally from the
program counter, so a word's action goes out in the cycle its address is current.

Word fields (:meth:`Microcode.layout`):

* ``kind``: the action's stream (``mac``, ``fetch``, ``zreq``);
* every :data:`~fieldtune.rtl.mac.ops.MAC_OP` field of a :class:`~.programs.MacOp`
  (constants or :class:`~.programs.Dynamic`), and ``results`` (a MATVEC whose results go to
  the loss unit);
* ``forward``, ``sign``: a :class:`~.programs.Fetch` 's;
* ``phase_end`` (the phase's last action), ``each`` (the phase repeats per sample),
  ``restart`` (with ``each``: the address of the phase's first action, where the next sample
  begins), ``prog_end`` (the program's last action) and ``then`` (the control state that
  follows it).

Fields an action does not use are don't care (index 0).
"""

from dataclasses import dataclass

from amaranth.hdl import Const
from amaranth.lib import data

from .programs import MacOp, Fetch, PerturbRequest


__all__ = ["Microcode", "compile_programs", "KINDS"]


#: Action kinds, by the action's class.
KINDS = {MacOp: "mac", Fetch: "fetch", PerturbRequest: "zreq"}


@dataclass(frozen=True)
class Microcode:
    """Compiled programs.

    Attributes
    ----------
    words : tuple of dict
        Per address, ``{field: value}`` (values as the programs give them; fields the action
        does not use are absent).
    names : tuple of str
        Per address, the action's name (``FO_forward_0_MacOp``: program, phase, position,
        action), for waveforms.
    entry : dict
        Program name -> address of its first action.
    values : dict
        Field -> tuple of the distinct values the programs use (first use first).
    """
    words: tuple
    names: tuple
    entry: dict
    values: dict

    def layout(self):
        """The ROM word: per field with more than one value, the index of its value."""
        return data.StructLayout({f: range(len(v)) for f, v in self.values.items()
                                  if len(v) > 1})

    def encode(self, address):
        """ROM word at ``address`` as an integer."""
        layout, word = self.layout(), self.words[address]
        fields = {f: self.values[f].index(word[f]) for f in layout.members if f in word}
        return Const.cast(layout.const(fields)).value

    def rom(self):
        """Every ROM word as an integer, by address."""
        return [self.encode(a) for a in range(len(self.words))]


def _word(action, phase, last_in_phase, then, start):
    """A word's fields (``start``: the address of its phase's first action); fields an action
    does not use are left out (don't care: index 0)."""
    word = {"kind": KINDS[type(action)], "phase_end": last_in_phase,
            "prog_end": then is not None and last_in_phase}
    if last_in_phase:
        word["each"] = phase.each
        if phase.each:
            word["restart"] = start
        if then is not None:
            word["then"] = then
    if isinstance(action, MacOp):
        word.update(action.used_fields(), results=action.has_results)
    if isinstance(action, Fetch):
        word.update(forward=action.forward, sign=action.sign)
    return word


def compile_programs(programs):
    """``programs``: name -> :class:`~.programs.Program`, in address order."""
    words, names, entry = [], [], {}
    for name, prog in programs.items():
        entry[name] = len(words)
        it = iter(prog.states)
        for p, phase in enumerate(prog.phases):
            start = len(words)
            for a, action in enumerate(phase.actions):
                last = a + 1 == len(phase.actions)
                then = prog.then if p + 1 == len(prog.phases) else None
                words.append(_word(action, phase, last, then, start))
                names.append(next(it))
    values = {}
    for word in words:
        for f, v in word.items():
            seen = values.setdefault(f, [])
            if v not in seen:
                seen.append(v)
    # flags: index = value
    values = {f: (False, True) if all(isinstance(x, bool) for x in v) and len(v) == 2
              else tuple(v) for f, v in values.items()}
    return Microcode(tuple(words), tuple(names), entry, values)

"""Where every adapter weight and coefficient lives: the memory map shared by the gateware,
the golden model and the perturbation engine's element order.

Weight memory: ``words`` words of ``lanes`` weights. Weight (and perturbation element) ``i``
is lane ``i % lanes`` of word ``i // lanes``, so the perturbation engine's element ``i`` is
weight ``i`` and one perturbation beat serves one word.

- dense: region ``W``; word ``k * classes + c`` holds ``W[c, k*L : (k+1)*L]``, ``k`` the
  feature beat (features of all taps concatenated in tap order).
- low-rank: region ``A`` first, word ``k * rank + r`` holds ``A_t[r, ...]`` for the
  ``lanes`` features of beat ``k`` (which lies in tap ``t``); then region ``B``, word
  ``base_B + j * classes + c`` holds ``B[c, j*L : (j+1)*L]`` over the ``rank * taps``
  intermediates ``u = (u_0, u_1, ...)``, the last beat zero-padded (padding weights stay 0).

Coefficient memory (scalars, ``coef_width`` bits): ``dz`` of mini-batch sample ``n`` at
``n * classes + c``; for low-rank, ``v = B^T dz`` of sample ``n`` at
``v_base + n * rank * taps + j`` with ``v_base = max_batch * classes``.
"""

from dataclasses import dataclass

from .params import MacParams


__all__ = ["RegionMap", "Layout"]


@dataclass(frozen=True)
class RegionMap:
    """One weight region: ``beats`` x ``rows`` words from ``base``. Beats are split into
    ``groups`` (``(first_beat, beats)``); output/coefficient index of row ``r`` in group
    ``g`` is ``g * rows + r``."""
    base: int
    beats: int
    rows: int
    groups: tuple
    padded_lanes: int = 0     # zero-padded lanes of the last beat (low-rank B)

    @property
    def words(self):
        return self.beats * self.rows

    @property
    def outputs(self):
        return len(self.groups) * self.rows

    def group_of_beat(self, k):
        for g, (first, n) in enumerate(self.groups):
            if first <= k < first + n:
                return g
        raise IndexError(k)


class Layout:
    """The memory map of one :class:`MacParams`."""

    def __init__(self, mac: MacParams):
        self.mac = mac
        L, C = mac.lanes, mac.classes
        beats = mac.features // L
        if mac.adapter == "dense":
            self.regions = (RegionMap(0, beats, C, ((0, beats),)),)
            self.inner = 0
        else:
            groups, first = [], 0
            for n in mac.taps:
                groups.append((first, n // L))
                first += n // L
            a = RegionMap(0, beats, mac.rank, tuple(groups))
            self.inner = mac.rank * len(mac.taps)
            kb = -(-self.inner // L)
            b = RegionMap(a.words, kb, C, ((0, kb),), padded_lanes=kb * L - self.inner)
            self.regions = (a, b)
        self.words = sum(r.words for r in self.regions)
        self.feature_beats = beats
        self.local_beats = -(-self.inner // L) if self.inner else 0
        self.dz_depth = mac.max_batch * C
        self.v_base = self.dz_depth
        self.coef_depth = self.dz_depth + mac.max_batch * self.inner

    @property
    def dimension(self):
        """Weights in memory, including low-rank padding: the perturbation vector length D."""
        return self.words * self.mac.lanes

    @property
    def trained_weights(self):
        """Weights that train (excluding padding)."""
        return self.dimension - sum(r.padded_lanes * r.rows for r in self.regions)

"""Per-epoch sample order: a keyed permutation of the cached record indices (issue 16).

The order hardware can make with a few dozen LUTs and no memory: a counter ``c`` walks
``0 .. 2^b - 1`` (``b`` = :func:`index_bits` of the record count ``n``, even), each ``c`` goes
through a balanced Feistel network of :data:`ROUNDS` rounds on two ``b/2``-bit halves, and
values ``>= n`` are skipped (rejection: ``2^b < 4n``, so at most three quarters of the walk, and
none when ``n`` is an even power of two such as R1's 256). A Feistel
network is a bijection for any round function, so every record comes exactly once per epoch.

Integer semantics (the contract the sequencer implements bit for bit):

* halves ``h = b/2`` bits, ``mask = 2^h - 1``; ``L = c >> h``, ``R = c & mask``;
* round ``r`` (0 .. ROUNDS-1): ``L, R = R, L ^ F(R, k_r)`` with
  ``F(x, k) = rotl_h((x + k) & mask, 1) ^ ((x + k) & mask) >> 1`` (add, rotate left by one within
  ``h`` bits, XOR with the sum shifted right by one);
* output ``(L << h) | R``;
* round keys of epoch ``e``: a 16-bit xorshift state ``s`` starts at
  ``(seed + e * KEY_STEP) mod 2^16`` (0 becomes :data:`KEY_STEP`), and ``k_r`` is the low ``h``
  bits of ``s`` after ``r + 1`` xorshift16 steps (shifts 7, 9, 8: ``s ^= s << 7; s ^= s >> 9;
  s ^= s << 8``, all mod 2^16).

``seed`` is a 16-bit run register; the same seed gives the same orders, epoch by epoch.
"Cache order" (the identity) stays the default of the training run.
"""

import numpy as np

from ...rtl.sequencer.order import ROUNDS, KEY_STEP, index_bits


__all__ = ["ROUNDS", "KEY_STEP", "ORDERS", "index_bits", "round_keys", "feistel",
           "epoch_order", "check_order", "check_bits", "xorshift16"]


#: Sample orders of a first-order run: the records as cached, or reshuffled every epoch.
ORDERS = ("cache", "shuffle")


def xorshift16(s):
    """One step of the 16-bit xorshift of the round keys (shifts 7, 9, 8)."""
    s ^= (s << 7) & 0xFFFF
    s ^= s >> 9
    s ^= (s << 8) & 0xFFFF
    return s


def round_keys(seed, epoch, half):
    """The :data:`ROUNDS` round keys (``half`` bits each) of ``epoch`` under ``seed``."""
    if not 0 <= seed < 1 << 16:
        raise ValueError(f"order seed must be an integer from 0 to 65535, not {seed}")
    s = (seed + epoch * KEY_STEP) & 0xFFFF or KEY_STEP
    keys = []
    for _ in range(ROUNDS):
        s = xorshift16(s)
        keys.append(s & ((1 << half) - 1))
    return keys


def feistel(c, keys, half):
    """The network applied to ``c`` (an int or an integer numpy array of ``2 * half`` bits)."""
    mask = (1 << half) - 1
    left, right = c >> half, c & mask
    for k in keys:
        t = (right + k) & mask
        f = (((t << 1) | (t >> (half - 1))) & mask) ^ (t >> 1)
        left, right = right, left ^ f
    return (left << half) | right


def epoch_order(n, seed, epoch, order="shuffle", bits=None):
    """Record indices of ``epoch`` (0-based) in the order the sequencer fetches them: int64
    array of length ``n``, a permutation of ``0 .. n-1`` (``order="cache"``: ascending).

    ``bits``: width of the walk, even and at least :func:`index_bits` ``(n)``; the hardware's
    walk is as wide as its cache's capacity needs (rtl/sequencer/order.py), so the same
    ``n`` records are visited in another order than with the narrowest walk (``None``)."""
    check_order(order)
    if order == "cache":
        return np.arange(n, dtype=np.int64)
    bits = check_bits(n, bits)
    half = bits // 2
    walk = feistel(np.arange(1 << bits, dtype=np.int64), round_keys(seed, epoch, half), half)
    return walk[walk < n]


def check_bits(n, bits):
    """``bits`` (None: :func:`index_bits` ``(n)``) if it is an even walk width covering ``n``
    records; ValueError otherwise."""
    least = index_bits(n)
    if bits is None:
        return least
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < least or bits % 2:
        raise ValueError(f"walk bits must be an even integer of at least {least} for {n} "
                         f"records, not {bits!r}")
    return bits


def check_order(order):
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")

"""The rules that cross blocks, in one place, with one wording.

Each block's parameters validate themselves (``rtl/*/params.py``); what two blocks must agree on
is checked here, before anything is elaborated. Two tiers:

- :func:`check_geometry`: lanes, taps and classes, which every design shares (the configuration,
  :class:`fieldtune.config.DesignConfig`, checks them on construction, so a block built alone
  already agrees with the others);
- :func:`check_soc`: the geometry plus the formats that meet where the SoC joins the blocks
  (perturbation, feature, logit and coefficient formats, the perturbation dimension); the SoC and
  its golden model check them.

Every error is a ``ValueError`` worded ``"<field> must be <expected> (<why>), not <value>"``.
"""

from .cache.params import CacheParams, LOGIT_WIDTH, LOGIT_FRAC
from .loss.params import LossParams
from .mac.layout import Layout
from .mac.params import MacParams
from .perturb.params import PerturbParams


__all__ = ["SECTION_TYPES", "check_geometry", "check_soc"]


#: Section name -> the parameter class the SoC's blocks take.
SECTION_TYPES = {"perturb": PerturbParams, "cache": CacheParams, "mac": MacParams,
                 "loss": LossParams}


def _mismatch(field, value, expected, why):
    raise ValueError(f"{field} must be {expected} ({why}), not {value}")


def check_geometry(config):
    """Section types, lanes, taps and classes of ``config`` (anything with ``perturb``,
    ``cache``, ``mac`` and ``loss`` sections) agree."""
    for name, cls in SECTION_TYPES.items():
        if not isinstance(getattr(config, name), cls):
            raise ValueError(f"{name} must be a {cls.__name__}, "
                             f"not {type(getattr(config, name)).__name__}")
    p, c, mac, loss = config.perturb, config.cache, config.mac, config.loss
    if c.lanes != mac.lanes:
        _mismatch("cache.lanes", c.lanes, mac.lanes, "mac.lanes")
    if p.lanes != mac.lanes:
        _mismatch("perturb.lanes", p.lanes, mac.lanes, "mac.lanes")
    if c.taps != mac.taps:
        _mismatch("cache.taps", list(c.taps), list(mac.taps), "mac.taps")
    for name, section in (("cache", c), ("mac", mac)):
        if section.classes != loss.classes:
            _mismatch(f"{name}.classes", section.classes, loss.classes, "loss.classes")


def check_soc(config):
    """:func:`check_geometry` and the formats that meet in the SoC."""
    check_geometry(config)
    p, c, mac, loss = config.perturb, config.cache, config.mac, config.loss
    if (c.out_width, c.out_frac) != (mac.feature_width, mac.feature_frac):
        _mismatch("cache.out_width/out_frac", f"{c.out_width}/{c.out_frac}",
                  f"{mac.feature_width}/{mac.feature_frac}",
                  "the MAC array's feature format")
    if (p.width, p.frac_bits) != (mac.perturb_width, mac.perturb_frac):
        _mismatch("perturb.width/frac_bits", f"{p.width}/{p.frac_bits}",
                  f"{mac.perturb_width}/{mac.perturb_frac}",
                  "mac.perturb_width/perturb_frac")
    rows = Layout(mac).regions[0].rows         # words per feature beat of the MAC array
    if c.beat_cycles > rows:
        raise ValueError(f"cache.dequantizer_lanes must be 0 or at least "
                         f"{-(-c.lanes // rows)} (a beat every {rows} cycles for the MAC "
                         f"array), not {c.dequantizer_lanes}")
    dim = Layout(mac).dimension
    if p.dimension != dim:
        _mismatch("perturb.dimension", p.dimension, dim, "the adapter weights, padding included")
    if (loss.logit_width, loss.logit_frac) != (LOGIT_WIDTH, LOGIT_FRAC):
        _mismatch("loss.logit_width/logit_frac", f"{loss.logit_width}/{loss.logit_frac}",
                  f"{LOGIT_WIDTH}/{LOGIT_FRAC}", "the cache's frozen logits z0")
    if (loss.logit_width, loss.logit_frac) != (mac.feature_width, mac.feature_frac):
        _mismatch("loss.logit_width/logit_frac", f"{loss.logit_width}/{loss.logit_frac}",
                  f"{mac.feature_width}/{mac.feature_frac}", "the MAC array's result format")
    if loss.prob_frac + 1 > mac.coef_width:
        _mismatch("mac.coef_width", mac.coef_width, f"at least {loss.prob_frac + 1}",
                  "dz is signed Q1.prob_frac")

"""The quantization spec: one string says how weights, inputs and gradients are quantized.

Accepted forms (case-insensitive):

    none                      full precision
    bw | bw-alpha             binary weights sign(clip(w, -1, 1)), optionally x alpha = mean|W| per filter
    tw | tw-alpha             ternary weights {-1, 0, 1} with threshold 0.7 mean|W|, optionally x alpha
    I/W/G                     bit-widths as in the paper's Table 5, e.g. 8/1/8 (BW-QIG), 6/2/6 (TW-QIG):
                              W = 1 binary, 2 ternary, 32 full precision; I (inputs of each quantized
                              convolution) and G (gradients) = 2..8 bits, or 32 for full precision;
                              I = 1: binary inputs sign(x) (XNOR-Net, Bulat & Tzimiropoulos), e.g. 1/1/32
    SCHEME-I/W/G              the same with a scheme, e.g. bw-alpha-8/1/8, bw-alpha-1/1/32; W must match the scheme

`bw` equals `32/1/32`, `8/1/8` equals `bw-8/1/8`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dunet import DunetError

FULL = 32  # the bit-width that means "not quantized"
MIN_BITS, MAX_BITS = 2, 8  # k-bit codes are stored as int8; k = 1 leaves only the zero level (eq. 6)
SIGN = 1  # input bits that mean sign(x) in {-1, +1} instead of eq. (6)'s grid

QUANT_CHOICES = (
    "none; bw, bw-alpha (binary weights), tw, tw-alpha (ternary weights); "
    "I/W/G bit-widths such as 8/1/8, 6/1/6, 8/2/8, 1/1/32 (W: 1 binary, 2 ternary, 32 full; "
    "I: 1 sign, 2-8 or 32; G: 2-8 or 32); or SCHEME-I/W/G such as bw-alpha-8/1/8, bw-alpha-1/1/32"
)

_SCHEMES = {  # name -> (weights, alpha)
    "bw": ("binary", False),
    "bw-alpha": ("binary", True),
    "tw": ("ternary", False),
    "tw-alpha": ("ternary", True),
}
_WEIGHT_BITS = {"fp": FULL, "binary": 1, "ternary": 2}
_PATTERN = re.compile(r"^(?:(?P<scheme>[a-z-]+?)-)?(?P<i>\d+)/(?P<w>\d+)/(?P<g>\d+)$")


@dataclass(frozen=True)
class QuantSpec:
    weights: str = "fp"  # "fp" | "binary" | "ternary"
    alpha: bool = False  # scale quantized weights by a float per output filter
    input_bits: int | None = None  # k-bit inputs of each quantized convolution, 1 = sign(x); None = float
    grad_bits: int | None = None  # k-bit error signals and weight gradients; None = float

    def __post_init__(self) -> None:
        # The one check of a spec, however it was made: the error lists the accepted forms.
        if self.weights not in _WEIGHT_BITS:
            raise DunetError(f"quant: unknown weight scheme {self.weights!r}; use {QUANT_CHOICES}")
        if self.alpha and self.weights == "fp":
            raise DunetError(f"quant: alpha scales quantized weights; full-precision weights have none; use {QUANT_CHOICES}")
        if self.input_bits is not None and self.input_bits != SIGN and not MIN_BITS <= self.input_bits <= MAX_BITS:
            raise DunetError(f"quant: input bits must be {SIGN} (sign), {MIN_BITS}-{MAX_BITS} or {FULL} (full precision), "
                             f"got {self.input_bits}; use {QUANT_CHOICES}")
        if self.grad_bits is not None and not MIN_BITS <= self.grad_bits <= MAX_BITS:
            raise DunetError(f"quant: gradient bits must be {MIN_BITS}-{MAX_BITS} or {FULL} (full precision), "
                             f"got {self.grad_bits}; use {QUANT_CHOICES}")

    @property
    def enabled(self) -> bool:
        return self != QuantSpec()

    @property
    def sign_inputs(self) -> bool:
        """Binary inputs: each quantized conv sees sign(x), so the pre-activation unit before it is
        BN -> sign -> conv, without a ReLU (after a ReLU every sign would be +1)."""
        return self.input_bits == SIGN

    @property
    def weight_bits(self) -> int:
        return _WEIGHT_BITS[self.weights]

    @property
    def name(self) -> str:
        """The canonical spec string; parse_quant(spec.name) == spec."""
        if not self.enabled:
            return "none"
        scheme = {("binary", False): "bw", ("binary", True): "bw-alpha",
                  ("ternary", False): "tw", ("ternary", True): "tw-alpha"}.get((self.weights, self.alpha))
        if self.input_bits is None and self.grad_bits is None:
            return scheme
        bits = f"{self.input_bits or FULL}/{self.weight_bits}/{self.grad_bits or FULL}"
        return f"{scheme}-{bits}" if self.alpha else bits


def _bits(value: str) -> int | None:
    return None if int(value) == FULL else int(value)


def parse_quant(text: str) -> QuantSpec:
    """Parse a quantization spec string (see the module docstring); errors name the allowed forms."""
    s = str(text).strip().lower()
    if s in ("none", ""):
        return QuantSpec()
    if s in _SCHEMES:
        weights, alpha = _SCHEMES[s]
        return QuantSpec(weights, alpha)
    match = _PATTERN.match(s)
    if not match:
        raise DunetError(f"quant {text!r} is not a quantization spec; use {QUANT_CHOICES}")
    weight_bits = int(match["w"])
    weights = {1: "binary", 2: "ternary", FULL: "fp"}.get(weight_bits)
    if weights is None:
        raise DunetError(f"quant {text!r}: weight bits must be 1 (binary), 2 (ternary) or {FULL}, got {weight_bits}")
    alpha = False
    if match["scheme"] is not None:
        if match["scheme"] not in _SCHEMES:
            raise DunetError(f"quant {text!r}: unknown scheme {match['scheme']!r}; use one of {', '.join(_SCHEMES)}")
        scheme_weights, alpha = _SCHEMES[match["scheme"]]
        if scheme_weights != weights:
            raise DunetError(
                f"quant {text!r}: {match['scheme']} has {_WEIGHT_BITS[scheme_weights]}-bit weights, "
                f"but the bit-widths say {weight_bits}"
            )
    return QuantSpec(weights, alpha, _bits(match["i"]), _bits(match["g"]))

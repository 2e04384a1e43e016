"""GBNF for JSON numbers within bounds: integers exactly in [lo, hi], decimals whose
value the grammar keeps within [minimum, maximum] (JSON Schema's numeric keywords).

Integers are spelled digit by digit: a range of same-length numbers splits at its first
differing digit into a lower edge, a free middle and an upper edge (the classic
range-to-pattern construction), so even zod's +-(2**53 - 1) costs a few dozen rules.
A decimal is an integer part in range followed by a fraction only where every fraction
keeps the value in range; what that leaves out (values next to a non-integer bound, or
between -1 and 0) is never produced, so whatever is produced is valid."""

import math
from dataclasses import dataclass
from typing import Any

MAX_DIGITS = 16  # as llama.cpp's converter: longer numbers are not produced
MAX_FRACTION_DIGITS = 6  # a bounded decimal needs no more, and a small model cannot run on in one


def _same_length(lo: str, hi: str) -> str:
    """The decimal strings of len(lo) == len(hi) characters between lo and hi (lo <= hi)."""
    i = 0
    while i < len(lo) and lo[i] == hi[i]:
        i += 1
    prefix = f'"{lo[:i]}" ' if i else ""
    if i == len(lo):
        return prefix.strip()
    a, b, tail = int(lo[i]), int(hi[i]), len(lo) - i - 1
    if tail == 0:
        return prefix + _digit_class(a, b)
    lo_rest, hi_rest = lo[i + 1:], hi[i + 1:]
    lo_edge, hi_edge = lo_rest != "0" * tail, hi_rest != "9" * tail
    alts = []
    if lo_edge:
        alts.append(f'"{a}" ({_same_length(lo_rest, "9" * tail)})')
    first, last = a + lo_edge, b - hi_edge
    if first <= last:
        alts.append(f"{_digit_class(first, last)} [0-9]{{{tail}}}")
    if hi_edge:
        alts.append(f'"{b}" ({_same_length("0" * tail, hi_rest)})')
    body = " | ".join(alts)
    return prefix + (f"({body})" if len(alts) > 1 else body)


def _digit_class(a: int, b: int) -> str:
    return f"[{a}]" if a == b else f"[{a}-{b}]"


def _naturals(lo: int, hi: int | None) -> list[str]:
    """Alternatives spelling the integers lo..hi (0 <= lo; hi None: up to MAX_DIGITS digits)."""
    alts = []
    if lo == 0:
        alts.append('"0"')
        lo = 1
    top = hi if hi is not None else 10**MAX_DIGITS - 1
    for digits in range(len(str(lo)), len(str(top)) + 1):
        a, b = max(lo, 10 ** (digits - 1)), min(top, 10**digits - 1)
        if a > b:
            continue
        if a == 10 ** (digits - 1) and b == 10**digits - 1:
            alts.append(f"[1-9] [0-9]{{{digits - 1}}}" if digits > 1 else "[1-9]")
        else:
            alts.append(_same_length(str(a), str(b)))
    return alts


def integer_range(lo: int | None, hi: int | None) -> str | None:
    """A GBNF expression for the integers in [lo, hi] (None: unbounded), or None if none."""
    if lo is not None and hi is not None and lo > hi:
        return None
    alts = []
    if lo is None or lo < 0:  # the negative part, as "-" and a magnitude
        magnitudes = _naturals(max(1, -hi) if hi is not None and hi < 0 else 1, None if lo is None else -lo)
        alts.append(f'"-" ({" | ".join(magnitudes)})')
    if hi is None or hi >= 0:
        alts.extend(_naturals(max(lo or 0, 0), hi))
    return f"({' | '.join(alts)})"


@dataclass(frozen=True)
class Bounds:
    """A JSON Schema's numeric bounds (drafts 4 to 2020-12 spellings alike)."""

    minimum: float | None
    maximum: float | None
    exclusive_min: bool
    exclusive_max: bool

    @classmethod
    def of(cls, schema: dict[str, Any]) -> "Bounds | None":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        xlo, xhi = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        exclusive_min = exclusive_max = False
        if _is_number(xlo) and (lo is None or xlo >= lo):
            lo, exclusive_min = xlo, True
        elif xlo is True:
            exclusive_min = True
        if _is_number(xhi) and (hi is None or xhi <= hi):
            hi, exclusive_max = xhi, True
        elif xhi is True:
            exclusive_max = True
        if not _is_number(lo) and not _is_number(hi):
            return None
        return cls(lo if _is_number(lo) else None, hi if _is_number(hi) else None, exclusive_min, exclusive_max)

    def integers(self) -> tuple[int | None, int | None]:
        """The smallest and largest integers within the bounds (None: unbounded)."""
        lo = hi = None
        if self.minimum is not None:
            lo = math.floor(self.minimum) + 1 if self.exclusive_min and float(self.minimum).is_integer() \
                else math.ceil(self.minimum)
        if self.maximum is not None:
            hi = math.ceil(self.maximum) - 1 if self.exclusive_max and float(self.maximum).is_integer() \
                else math.floor(self.maximum)
        return lo, hi


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def integer_gbnf(bounds: Bounds) -> str | None:
    """The rule body of an integer within `bounds`, or None when no integer is."""
    body = integer_range(*bounds.integers())
    return None if body is None else f"{body} space"


def number_gbnf(bounds: Bounds) -> str | None:
    """The rule body of a decimal within `bounds`, or None when the bounds hold no number."""
    lo, hi = bounds.integers()
    whole = integer_range(lo, hi)
    if whole is None:
        return _within_one_unit(bounds)
    # k.f is within bounds for every fraction f when [k, k+1) (k >= 0) or (k-1, k] (k < 0) is.
    f_lo = lo if lo is None or lo >= 0 else min(max(lo, math.ceil(bounds.minimum) + 1), 0)  # type: ignore[arg-type]
    f_hi = hi if hi is None or hi < 0 else max(min(hi, math.floor(bounds.maximum) - 1), -1)  # type: ignore[arg-type]
    fractional = integer_range(f_lo, f_hi)
    if fractional is None:
        return f"{whole} space"
    return f'({whole} | {fractional} "." [0-9]{{1,{MAX_FRACTION_DIGITS}}}) space'


def _within_one_unit(bounds: Bounds) -> str | None:
    """Bounds with no integer between them, inside one unit (k, k+1): k.f with a last
    fraction digit that is not 0, so never k itself; where a bound is not an integer, the
    answer is validated against it afterwards."""
    low, high = bounds.minimum, bounds.maximum
    if low is None or high is None or low > high or math.floor(low) < math.ceil(high) - 1:
        return None
    k = math.floor(low)
    fraction = f'"." [0-9]{{0,{MAX_FRACTION_DIGITS - 1}}} [1-9]'
    head = f'"{k}"' if k >= 0 else f'"-{-(k + 1)}"'
    return f"{head} {fraction} space"

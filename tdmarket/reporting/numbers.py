"""Numbers as a person reads them: solver noise printed as 0, a few significant digits, meaningful percentages.

The solvers stop at tolerances of about 1e-8 (HiGHS, Clarabel), so a slack of `1.73e-12` MW or a gap of
`+0.0000 %` is noise, not a result.  Every value below its tolerance is printed as `0`; other values get
`SIGNIFICANT` significant digits (money: cents, with thousands separators).  A relative gap is printed only
where its base is not about zero; otherwise the gap is given in € alone (no `+273527 %`).
"""

from __future__ import annotations

import math

SIGNIFICANT = 4
# Below these magnitudes a value is solver noise and printed as 0.
TOLERANCE = {
    "EUR": 0.005,  # half a cent
    "MW": 1e-5,  # 10 W: below the clearing tolerances of the decomposed schemes
    "Mvar": 1e-5,
    "EUR/MWh": 1e-6,
    "pu": 1e-9,
    "s": 0.0,
    "": 1e-9,
}
# A relative gap is shown only when its base is at least this share of the value compared with it (beyond, a
# relative gap of more than ×100 says only that the base is about zero) and at least 1 €.
RELATIVE_BASE_SHARE = 0.01
RELATIVE_TOLERANCE = 1e-7  # |gap| / |base| below this prints as 0 %
SMALLEST_PERCENT = 0.001  # smaller percentages print as "<0.001 %" (with their sign)


def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def clean(value: float, unit: str = "") -> float:
    """`value` with solver noise (below the unit's tolerance) set to exactly 0."""
    value = float(value)
    return 0.0 if abs(value) < TOLERANCE.get(unit, TOLERANCE[""]) else value


def significant(value: float, digits: int = SIGNIFICANT, *, sign: bool = False) -> str:
    """`value` with `digits` significant digits, in fixed notation from 1e-4 to 1e9, thousands separated."""
    if value == 0:
        return "0"
    rounded = float(f"{value:.{digits - 1}e}")  # the magnitude after rounding (99.99 -> 100, not 100.0)
    magnitude = math.floor(math.log10(abs(rounded)))
    if magnitude < -4 or magnitude >= 9:
        return f"{value:{'+' if sign else ''}.{digits - 1}e}"
    decimals = max(0, digits - 1 - magnitude)
    text = f"{value:{'+' if sign else ''},.{decimals}f}"
    return text.rstrip("0").rstrip(".") if decimals else text  # 5.610 -> 5.61


def fmt(value, unit: str = "", digits: int = SIGNIFICANT, *, sign: bool = False, with_unit: bool = False) -> str:
    """One number for a table: '-' when missing, '0' below the unit's tolerance, else `digits` significant."""
    if is_missing(value):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "count" or (isinstance(value, int) and unit == ""):
        return f"{round(value):,}"
    value = clean(value, unit)
    text = significant(value, digits, sign=sign)
    return f"{text} {unit}" if with_unit and unit else text


def fmt_eur(value, *, sign: bool = False, with_unit: bool = False) -> str:
    """Money in € with cents (thousands separated) or, from 1e9 €, 4 significant digits; below a half cent: 0."""
    if is_missing(value):
        return "-"
    value = clean(value, "EUR")
    if value == 0:
        text = "0"
    elif abs(value) >= 1e9:
        text = significant(value, SIGNIFICANT, sign=sign)
    else:
        text = f"{value:{'+' if sign else ''},.2f}"
    return f"{text} €" if with_unit else text


def relative_gap(value: float, base: float) -> float | None:
    """(value − base) / |base|, or None when the base is about zero: below 1 € or below `RELATIVE_BASE_SHARE`
    of |value| (a gap of more than ×100).  Then only the gap in € is meaningful."""
    if is_missing(value) or is_missing(base):
        return None
    if abs(base) < max(1.0, RELATIVE_BASE_SHARE * abs(value)):
        return None
    return (value - base) / abs(base)


def fmt_percent(share, *, sign: bool = True) -> str:
    """A share as a percentage with 3 significant digits ('0 %' when about 0, '-' when not meaningful); with
    `sign` a gap (+/−), without it a size such as a tolerance."""
    if is_missing(share):
        return "-"
    if abs(share) < RELATIVE_TOLERANCE:
        return "0 %"
    if abs(100 * share) < SMALLEST_PERCENT:
        return f"{('+' if share > 0 else '-') if sign else ''}<{SMALLEST_PERCENT:g} %"
    return f"{significant(100 * share, 3, sign=sign)} %"

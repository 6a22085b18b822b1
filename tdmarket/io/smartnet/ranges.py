"""Plausible ranges of every numeric column of the SmartNet files (docs/format.md §1, "Plausible ranges").

A finite but absurd number (1e308 MW, an impedance of 1e200 p.u.) would pass the type checks and then break the
solvers with numerical errors that name no file; the reader rejects it instead, naming file, row and column.
The bounds are in the file's own units and sit orders of magnitude beyond any real system (a national
transmission system has tens of GW; the shared instances stay below 2 GW, 1 p.u. and 100 €/MWh), so they only
catch values that cannot be meant.  Sign rules (R ≥ 0, Vsqmin ≤ Vsqmax, 0 ≤ Xlb ≤ 1, ...) are checks of their
own with their own messages (tdmarket.model.validate); `None` marks a column that such a rule bounds entirely.

Integer columns without an entry (ids) are bounded by |value| ≤ 2**53 (`tdmarket.io.table.ID_RANGE`).
"""

from __future__ import annotations

from ..table import Range

POWER_MW = 1e5  # 100 GW
PRICE_EUR_MWH = 1e6
IMPEDANCE_PU = 1e4
MAX_PERIODS = 10_000  # EndTime - StartTime + 1; more than a year of hourly periods

_power = Range(-POWER_MW, POWER_MW, "MW")
_reactive = Range(-POWER_MW, POWER_MW, "Mvar")
_impedance = Range(-IMPEDANCE_PU, IMPEDANCE_PU, "p.u.")
_period = Range(-1e9, 1e9)

RANGES: dict[str, dict[str, Range | None]] = {
    "GeneralParam.csv": {"StartTime": _period, "EndTime": _period, "baseMVA": Range(1e-3, 1e5, "MVA")},
    "DistributionNodes.csv": {
        "Vsqmin": Range(-4, 4, "p.u.²"),
        "Vsqmax": Range(-4, 4, "p.u.²"),
        "G": Range(-1e4, 1e4, "p.u."),
        "B": Range(-1e4, 1e4, "p.u."),
    },
    "Edges.csv": {
        "R": _impedance,
        "X": _impedance,
        "B": _impedance,
        "S": Range(-1e9, 1e9, "MVA"),
        "Tap": Range(-10, 10),
        "Shift": Range(-360, 360, "degrees"),
        "Pmin": _power,
        "Pmax": _power,
        "Qmin": _reactive,
        "Qmax": _reactive,
    },
    "NetInjections.csv": {"forT": _period, "P": _power, "Q": _reactive},
    "Bids.csv": {
        "forT": _period,
        "QuantityLoQ": _power,
        "QuantityHiQ": _power,
        "PriceLoQ": Range(-PRICE_EUR_MWH, PRICE_EUR_MWH, "€/MWh"),
        "PriceHiQ": Range(-PRICE_EUR_MWH, PRICE_EUR_MWH, "€/MWh"),
        "Xlb": None,  # 0 <= Xlb <= 1 (validate)
        "Xub": None,  # must be 1 (reader)
    },
    "RampConstraints.csv": {"RCRealPowerIncr": _power},
    "MinDurationPairs.csv": {"Tau": _period, "ForTime": _period},
    "HalfPlanes.csv": {"QPHPSlope": Range(-1e6, 1e6, "Mvar/MW"), "QPHPOffset": _reactive},
    "QPDisc.csv": {"QPDMax": Range(-POWER_MW, POWER_MW, "MVA")},
}


def ranges_of(name: str) -> dict[str, Range | None]:
    """The ranges of file `name` (an edges file under another name, e.g. `Edges_hard.csv`, has those of
    `Edges.csv`)."""
    if name not in RANGES and name.lower().startswith("edges"):
        return RANGES["Edges.csv"]
    return RANGES.get(name, {})

"""tdmarket: clearing of European balancing markets across transmission and distribution networks."""

from .errors import InputError, SolverError, TdmarketError

__version__ = "0.1.0"


def load(path, **options):
    """Read, build and check an instance (e.g. a SmartNet folder); see `tdmarket.io.read`."""
    from .io import read

    return read(path, **options)


def clear(instance, scheme: str = "centralized", **options):
    """Clear an instance (or a path to one) with a coordination scheme; returns a results object."""
    from .api import clear as _clear

    return _clear(instance, scheme=scheme, **options)


__all__ = ["InputError", "SolverError", "TdmarketError", "load", "clear", "__version__"]

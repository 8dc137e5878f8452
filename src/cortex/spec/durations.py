"""Durations and quantities as users write them in an API configuration.

Durations follow Go's ``time.ParseDuration`` (what Cortex used) plus ``d`` for days; a bare
number is seconds. Quantities follow Kubernetes (``200m`` CPU, ``1Gi`` memory), and payload sizes
accept the spellings people use for files (``10MB``, ``100MiB``).
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Decimal

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_SIGNED_NUMBER = re.compile(rf"[-+]?{_NUMBER}(?:[eE][-+]?\d+)?")

_DURATION_UNITS: dict[str, Decimal] = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),  # micro sign, as Go accepts
    "μs": Decimal("1e-6"),  # greek mu, as Go accepts
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_DURATION_PART = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h|d)")
_DURATION = re.compile(rf"([-+]?)((?:{_NUMBER}(?:ns|us|µs|μs|ms|s|m|h|d))+)")
_DURATION_FORMS = 'a number of seconds or a duration such as "30s", "5m", "1h30m", "500ms", "1.5h" or "7d"'

_MEMORY_SUFFIXES: dict[str, int] = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_MEMORY = re.compile(rf"({_NUMBER}(?:[eE][-+]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
_MEMORY_FORMS = 'a number of bytes or a Kubernetes quantity such as "512Mi", "1Gi", "500M" or "1e9"'

_SIZE_SUFFIXES: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "ki": 2**10,
    "kib": 2**10,
    "mi": 2**20,
    "mib": 2**20,
    "gi": 2**30,
    "gib": 2**30,
    "ti": 2**40,
    "tib": 2**40,
}
_SIZE = re.compile(rf"({_NUMBER})\s*([a-z]*)")
_SIZE_FORMS = 'a number of bytes or a size such as "100Mi", "10MB", "512KiB" or "1G"'

_CPU = re.compile(rf"({_NUMBER}(?:[eE][-+]?\d+)?)(m?)")
_CPU_FORMS = 'a number of cores or millicores such as "200m", "1" or "1.5"'


def _number(value: object, what: str, forms: str) -> Decimal:
    """Return a plain (non-bool, finite) number as a Decimal, or raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"invalid {what} {value!r}: use {forms}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"invalid {what} {value!r}: must be finite; use {forms}")
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _whole_up(value: Decimal) -> int:
    # Kubernetes rounds fractional quantities up to the next whole unit; so do we.
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def parse_duration(value: str | int | float) -> float:
    """Parse a duration into seconds.

    Args:
        value: a bare number of seconds (``90``, ``"1.5"``), or a Go-style duration
            (``"60s"``, ``"5m"``, ``"1h30m"``, ``"500ms"``, ``"1.5h"``, ``"0s"``) or ``"7d"`` for days.

    Returns:
        The duration in seconds.

    Raises:
        ValueError: the value is not one of the accepted forms.
    """
    if not isinstance(value, str):
        return float(_number(value, "duration", _DURATION_FORMS))
    text = value.strip()
    if _SIGNED_NUMBER.fullmatch(text):
        return parse_duration(float(text))
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f'invalid duration "{value}": use {_DURATION_FORMS}')
    total = sum(
        (Decimal(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(match.group(2))),
        Decimal(0),
    )
    return float(-total if match.group(1) == "-" else total)


def format_duration(seconds: float) -> str:
    """Format seconds as the shortest duration string :func:`parse_duration` reads back.

    Args:
        seconds: a finite number of seconds.

    Returns:
        For example ``"1h"`` for 3600, ``"1m30s"`` for 90, ``"500ms"`` for 0.5, ``"7d"`` for 604800.

    Raises:
        ValueError: ``seconds`` is infinite or not a number.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"can't format {seconds!r} as a duration")
    nanos = round(seconds * 1_000_000_000)
    if nanos < 0:
        return "-" + format_duration(-seconds)
    if nanos == 0:
        return "0s"
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("us", 1_000)):
            if nanos % size == 0:
                return f"{nanos // size}{unit}"
        return f"{nanos}ns"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, nanos = divmod(nanos, size * 1_000_000_000)
        if count:
            parts.append(f"{count}{unit}")
    if nanos:
        whole, fraction = divmod(nanos, 1_000_000_000)
        parts.append(f"{whole}.{fraction:09d}".rstrip("0").rstrip(".") + "s")
    return "".join(parts)


def parse_cpu(value: str | int | float) -> int:
    """Parse a Kubernetes CPU quantity into millicores.

    Args:
        value: cores as a number (``1``, ``1.5``, ``"0.5"``) or millicores (``"200m"``).

    Returns:
        Millicores, rounded up to a whole millicore.

    Raises:
        ValueError: the value is negative or not one of the accepted forms.
    """
    if not isinstance(value, str):
        cores = _number(value, "CPU quantity", _CPU_FORMS)
        unit = ""
    else:
        match = _CPU.fullmatch(value.strip())
        if match is None:
            raise ValueError(f'invalid CPU quantity "{value}": use {_CPU_FORMS}')
        cores, unit = Decimal(match.group(1)), match.group(2)
    if cores < 0:
        raise ValueError(f"invalid CPU quantity {value!r}: must not be negative")
    return _whole_up(cores if unit == "m" else cores * 1000)


def parse_memory(value: str | int | float) -> int:
    """Parse a Kubernetes memory quantity into bytes.

    Args:
        value: bytes as a number, or a quantity such as ``"100Mi"``, ``"1Gi"``, ``"512M"``, ``"1e9"``.

    Returns:
        Bytes, rounded up to a whole byte.

    Raises:
        ValueError: the value is negative or not one of the accepted forms (``"100m"`` is refused:
            Kubernetes would read it as a tenth of a byte).
    """
    if not isinstance(value, str):
        amount = _number(value, "memory quantity", _MEMORY_FORMS)
    else:
        match = _MEMORY.fullmatch(value.strip())
        if match is None:
            raise ValueError(f'invalid memory quantity "{value}": use {_MEMORY_FORMS}')
        amount = Decimal(match.group(1)) * _MEMORY_SUFFIXES[match.group(2) or ""]
    if amount < 0:
        raise ValueError(f"invalid memory quantity {value!r}: must not be negative")
    return _whole_up(amount)


def parse_size(value: str | int | float) -> int:
    """Parse a payload size into bytes.

    Args:
        value: bytes as a number, or a size with a unit, case-insensitive: ``k``/``kB``, ``M``/``MB``,
            ``G``/``GB``, ``T``/``TB`` are powers of 1000; ``Ki``/``KiB``, ``Mi``/``MiB``, ``Gi``/``GiB``,
            ``Ti``/``TiB`` are powers of 1024.

    Returns:
        Bytes, rounded up to a whole byte.

    Raises:
        ValueError: the value is negative or not one of the accepted forms.
    """
    if not isinstance(value, str):
        amount = _number(value, "size", _SIZE_FORMS)
    else:
        match = _SIZE.fullmatch(value.strip().lower())
        if match is None or match.group(2) not in _SIZE_SUFFIXES:
            raise ValueError(f'invalid size "{value}": use {_SIZE_FORMS}')
        amount = Decimal(match.group(1)) * _SIZE_SUFFIXES[match.group(2)]
    if amount < 0:
        raise ValueError(f"invalid size {value!r}: must not be negative")
    return _whole_up(amount)

"""The five gravity contexts of the study (protocol.md §1.1), in their list order."""

from __future__ import annotations

EARTH_GRAVITY = 9.81

# name -> absolute gravity in m/s² (magnitude); classic control uses the factor relative to earth.
PLANET_GRAVITY: dict[str, float] = {
    "uranus": 8.7,
    "venus": 8.9,
    "saturn": 9.0,
    "earth": 9.81,
    "neptune": 11.0,
}


def g_factor(context: str) -> float:
    return PLANET_GRAVITY[context] / EARTH_GRAVITY

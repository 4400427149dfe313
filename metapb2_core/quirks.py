"""The single switch between the evidently intended behaviour and the original code's quirks.

methods.md §11 lists the quirks. The default is the intended behaviour; ``Quirks.faithful()``
reproduces the original where a quirk changes results materially, so the paper's numbers can be
compared like for like. Later modules read only the field that concerns them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Quirks:
    # protocol.md §1.2: gymnasium 0.28.1's Pendulum integrates with `g` and never reads the
    # `gravity` key CARL sets, so all five pendulum contexts had identical dynamics.
    pendulum_gravity_noop: bool = False

    @classmethod
    def faithful(cls) -> Quirks:
        return cls(**{f.name: True for f in fields(cls)})

    @classmethod
    def from_flag(cls, faithful: bool) -> Quirks:
        return cls.faithful() if faithful else cls()

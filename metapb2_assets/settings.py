"""The environment a deployment configures the platform through, read here alone: the study root
and Dagster instance (``DAGSTER_HOME``, default ``./dagster_home``), the Ray cluster's address and
a study root other than the instance's (deploy/values.yaml sets both; empty means the embedded
default)."""

from __future__ import annotations

import os
from pathlib import Path

DAGSTER_HOME_ENV = "DAGSTER_HOME"
DEFAULT_HOME = "dagster_home"
RAY_ADDRESS_ENV = "METAPB2_RAY_ADDRESS"
STUDY_ROOT_ENV = "METAPB2_STUDY_ROOT"


def default_home() -> Path:
    """``$DAGSTER_HOME``, or ``./dagster_home`` where it is unset (the one place of that default)."""
    return Path(os.environ.get(DAGSTER_HOME_ENV) or DEFAULT_HOME).resolve()


def setting(name: str) -> str:
    """The value of a deployment's environment variable ``name``; "" where unset."""
    return os.environ.get(name, "")

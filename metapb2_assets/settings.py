"""The environment a deployment configures the platform through, read here alone: the study root
and Dagster instance (``DAGSTER_HOME``, default ``./dagster_home``), the Ray cluster's address and
a study root other than the instance's (deploy/values.yaml sets both; empty means the embedded
default), the custom Ray resources each run asks for and how often Ray re-runs a task whose
node died."""

from __future__ import annotations

import os
from pathlib import Path

DAGSTER_HOME_ENV = "DAGSTER_HOME"
DEFAULT_HOME = "dagster_home"
RAY_ADDRESS_ENV = "METAPB2_RAY_ADDRESS"
STUDY_ROOT_ENV = "METAPB2_STUDY_ROOT"
RAY_RESOURCES_ENV = "METAPB2_RAY_TASK_RESOURCES"  # JSON, e.g. {"metapb2_runs": 1}
RAY_RETRIES_ENV = "METAPB2_RAY_MAX_RETRIES"


def default_home() -> Path:
    """``$DAGSTER_HOME``, or ``./dagster_home`` where it is unset (the one place of that default)."""
    return Path(os.environ.get(DAGSTER_HOME_ENV) or DEFAULT_HOME).resolve()


def setting(name: str) -> str:
    """The value of a deployment's environment variable ``name``; "" where unset."""
    return os.environ.get(name, "")

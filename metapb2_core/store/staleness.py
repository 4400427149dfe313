"""Which materialised partitions are stale: made by other code, or older than an input."""

from __future__ import annotations

import pandas as pd

from metapb2_core.code_equivalence import equivalent
from metapb2_core.store.catalog import Catalog

SETTINGS_MARK = "@"


def settings_version(code_version: str, budget: str, faithful: bool) -> str:
    """The version a lineage row records: the code's, then the budget and quirk mode it ran with,
    so a partition made at another budget or mode is not current for a study of this one."""
    return f"{code_version}{SETTINGS_MARK}{budget}" + ("-faithful" if faithful else "")


def current(recorded: str, version: str) -> bool:
    """Whether a lineage row's version is ``version``: the same settings, and code that is the
    same or certified to compute the same records (``code_equivalence``)."""
    code, mark, settings = recorded.partition(SETTINGS_MARK)
    want_code, want_mark, want_settings = version.partition(SETTINGS_MARK)
    return (mark, settings) == (want_mark, want_settings) and code in equivalent(want_code)


def partition_seed(partition: str) -> str | None:
    """The seed of a study partition key: ``<seed>|<task>`` (task × seed, dimensions in name order)
    or ``<seed>``; None for an unpartitioned asset (``""``)."""
    return partition.split("|")[0] if partition else None


def stale_partitions(
    catalog: Catalog, asset_key: str, code_version: str, input_keys: list[str], code_only: bool = False
) -> list[str]:
    """Partitions of ``asset_key`` whose lineage row has another version (only its code part
    when ``code_only``: where no study fixes the budget), or that were materialised before the
    newest materialisation of an input of the same seed (every seed's, for an unpartitioned asset
    or input; a run that failed its checks, or is still staged, is nobody's input): each seed is a
    replicate, so a new seed never makes an earlier one's partitions stale."""
    rows = catalog.lineage([asset_key]).reset_index(drop=True)
    if rows.empty:
        return []
    versions = rows["code_version"]
    if code_only:
        versions = versions.str.split(SETTINGS_MARK).str[0]
        code_version = code_version.split(SETTINGS_MARK)[0]
    stale = ~versions.map(lambda v: current(v, code_version)).astype(bool)
    if input_keys:
        inputs = catalog.lineage(input_keys)
        inputs = inputs[inputs["status"].isna() | (inputs["status"] == "passed")]
        inputs = inputs.dropna(subset=["materialized_at"]).reset_index(drop=True)
        seeds = inputs["partition"].map(partition_seed)
        every = inputs["materialized_at"].max()
        shared = inputs.loc[seeds.isna(), "materialized_at"].max()  # unpartitioned inputs
        by_seed = inputs[seeds.notna()].groupby(seeds[seeds.notna()])["materialized_at"].max()

        def newest(partition: str) -> object:
            seed = partition_seed(partition)
            if seed is None:
                return every
            times = [t for t in (by_seed.get(seed), shared) if pd.notna(t)]
            return max(times) if times else None

        made = rows["materialized_at"]
        older = [pd.notna(t := newest(p)) and m < t for p, m in zip(rows["partition"], made, strict=True)]
        stale |= pd.Series(older, index=rows.index, dtype=bool)
    return sorted(rows.loc[stale, "partition"])

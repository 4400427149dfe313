"""Which materialised partitions are stale: made by other code, or older than an input."""

from __future__ import annotations

from metapb2_core.store.catalog import Catalog

SETTINGS_MARK = "@"


def settings_version(code_version: str, budget: str, faithful: bool) -> str:
    """The version a lineage row records: the code's, then the budget and quirk mode it ran with,
    so a partition made at another budget or mode is not current for a study of this one."""
    return f"{code_version}{SETTINGS_MARK}{budget}" + ("-faithful" if faithful else "")


def stale_partitions(
    catalog: Catalog, asset_key: str, code_version: str, input_keys: list[str], code_only: bool = False
) -> list[str]:
    """Partitions of ``asset_key`` whose lineage row has another version (only its code part
    when ``code_only``: where no study fixes the budget), or that were materialised before the
    newest materialisation of any asset in ``input_keys`` (a run that failed its checks, or is
    still staged, is nobody's input)."""
    if "lineage" not in catalog.tables():
        return []
    rows = catalog.query(
        "SELECT partition, code_version, materialized_at FROM lineage WHERE asset_key = ?", [asset_key]
    )
    newest_input = None
    if input_keys:
        marks = ", ".join("?" for _ in input_keys)
        newest_input = catalog.query(
            f"SELECT max(materialized_at) AS t FROM lineage WHERE asset_key IN ({marks}) "
            "AND (status IS NULL OR status = 'passed')",
            input_keys,
        )["t"].iloc[0]
    versions = rows["code_version"]
    if code_only:
        versions = versions.str.split(SETTINGS_MARK).str[0]
        code_version = code_version.split(SETTINGS_MARK)[0]
    stale = versions != code_version
    if newest_input is not None and newest_input == newest_input:  # not NaT
        stale |= rows["materialized_at"] < newest_input
    return sorted(rows.loc[stale, "partition"])

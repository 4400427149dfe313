"""Code versions certified to compute the same records.

A code version is a digest of source (``provenance``): any edit of the code that computes an asset
changes it, and staleness then calls every record made before the edit not current. An edit that
computes exactly the same numbers (a refactor, a feature on another path, a new diagnostic) can be
certified: ``python -m metapb2_assets.certify --against COMMIT`` runs a reference study with the
code of COMMIT and with this code, on the same machine, compares every record value for value
(wall times aside), and records here, per asset, the pairs of versions whose records were equal.
Staleness treats versions linked here, directly or through others, as one (``equivalent``).

The ledger is ``code_equivalence.json`` beside this module (data, not code: it is not part of any
digest). Each link keeps its evidence: the commits, the reference study, how many records were
compared, the machine and the date. Nothing but the certification writes it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass
from pathlib import Path

LEDGER = Path(__file__).with_name("code_equivalence.json")


@dataclass(frozen=True)
class Link:
    asset: str  # the asset's name in its family ("evaluation_pbt", "meta_runs", "portfolio", …)
    old: str  # a code version (digest) of the asset at ``against``
    new: str  # the code version at ``head``
    against: str  # commit
    head: str  # commit (or "working tree")
    records: int  # records (and tables) compared value for value, all equal
    reference: str  # the reference study (its declaration, in words)
    machine: str
    date: str


def read_links(path: Path | None = None) -> list[Link]:
    path = path or LEDGER
    if not path.is_file():
        return []
    return [Link(**row) for row in json.loads(path.read_text())["links"]]


def write_links(links: list[Link], path: Path | None = None) -> None:
    """Append ``links`` to the ledger (each once), atomically."""
    path = path or LEDGER
    known = read_links(path)
    merged = known + [link for link in links if link not in known]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"links": [asdict(link) for link in merged]}, indent=2) + "\n")
    tmp.replace(path)
    _classes.cache_clear()


@functools.cache
def _classes(path: Path) -> dict[str, frozenset[str]]:
    """version → every version linked to it, over all assets (a digest names one source text)."""
    parent: dict[str, str] = {}

    def find(v: str) -> str:
        while parent.setdefault(v, v) != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for link in read_links(path):
        parent[find(link.old)] = find(link.new)
    groups: dict[str, set[str]] = {}
    for v in list(parent):
        groups.setdefault(find(v), set()).add(v)
    return {v: frozenset(g) for g in groups.values() for v in g}


def equivalent(version: str, path: Path | None = None) -> frozenset[str]:
    """The code versions certified to compute what ``version`` computes (itself included)."""
    return _classes(path or LEDGER).get(version, frozenset({version}))

"""Dagster assets of the MetaPB2 platform (wires `metapb2_core` functions; see the asset issue)."""

"""Dagster assets of the MetaPB2 platform; they only wire metapb2_core functions together."""

"""Dagster assets, one subpackage per domain (archive, backfill, rebuild, maintenance, streaming_control,
quality, dbt); `rdg_platform.definitions` wires them."""

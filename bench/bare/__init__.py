"""Bench-only app: the bare DRF insert that order placement is compared with."""

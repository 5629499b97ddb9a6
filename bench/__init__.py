"""Benchmarks of the outbox relay and delivery path (`make bench`)."""

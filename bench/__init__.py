"""Benchmarks: one command each, figures and how to read them in docs/benchmarks.md."""

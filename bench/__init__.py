"""Benchmarks for issue 6 ("Prove it"): one command each, figures in docs/benchmarks.md."""

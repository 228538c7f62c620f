"""The repository's own tools shared by the tests, the demo and the benchmarks (not installed)."""

"""The ticker fan-out benchmark: `python -m bench --help`, results in docs/performance.md."""

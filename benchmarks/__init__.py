"""Engine benchmarks: the reference server against raw PostgreSQL and HTTP limits and peers.

`python -m benchmarks [--quick]` writes reports/bench.json; ratios in one run are what count.
"""

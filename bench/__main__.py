"""``python -m bench``: the benchmark of ticker against its ceiling (see bench/run.py)."""

from bench.run import main

main()

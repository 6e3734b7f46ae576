"""``python -m ticker``: see ``ticker.cli``."""

from ticker.cli import main

main()

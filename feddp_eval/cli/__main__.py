"""``python -m feddp_eval.cli``."""

from feddp_eval.cli import main

main()

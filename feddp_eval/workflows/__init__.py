"""One module per use case: train, attack, check, sweep (and the sweep's worker processes).

:mod:`feddp_eval.pipeline` re-exports their public functions; that façade is the library API.
"""

# Every process that runs a workflow (the CLI, a sweep's spawned workers and Ray tasks, which unpickle
# the sweep's point functions from here, the Flower App, a notebook) loads the attack plugins first:
# a config's hash and its checks read what each attack declares (``feddp_eval.plugins``).
import attacks  # noqa: F401

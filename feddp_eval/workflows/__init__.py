"""One module per use case: train, attack, check, sweep (and the sweep's worker processes).

:mod:`feddp_eval.pipeline` re-exports their public functions; that façade is the library API.
"""

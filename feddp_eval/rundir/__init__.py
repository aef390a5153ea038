"""The run directory's one owner: its names, writers, checkers and readers.

A run directory is what ``feddp-eval train`` writes and every later stage (attack, sweep, check,
report) reads. :mod:`~feddp_eval.rundir.names` names it and its files,
:mod:`~feddp_eval.rundir.prepare` creates, reuses and stamps it, and
:mod:`~feddp_eval.rundir.check` refuses a file in it that cannot be trusted,
:mod:`~feddp_eval.rundir.summary` types its ``summary.json`` (:class:`TrainSummary`), and
:mod:`~feddp_eval.rundir.read` reads its metrics, manifest, summary and tiles without torch.

Importing this package imports none of its modules (nor torch).
"""

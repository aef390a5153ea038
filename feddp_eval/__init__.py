"""feddp-eval: privacy attacks and defenses for federated histopathology segmentation.

Importing this package is cheap (no torch); the library API lives in
:mod:`feddp_eval.pipeline`.
"""

__version__ = "0.1.0"

"""mnadlib: Memory-guided Normality for Anomaly Detection (Park, Noh & Ham, CVPR 2020), re-implemented.

A faithful, tested re-implementation of the authors' code (cvlab-yonsei/MNAD) with safe loading of
their checkpoints, a synthetic benchmark that runs anywhere, anomaly localization and notebooks.
"""

__version__ = "0.1.0"

"""Evaluation: data set readers, the published tables' metrics (as MMPose 1.3.2's evaluators define them) and
the batched runner behind ``python infer.py eval``."""

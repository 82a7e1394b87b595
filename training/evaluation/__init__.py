"""Judging a model: calibration and the not-a-digit threshold, feature-distance scores, leave-family-out folds, and
the plots a run keeps."""

"""Training: the data (dataset, drawn digits, negatives), the recipe, the loop, calibration, the run's record and
registry, promotion, retraining from feedback and the experiments. Run through train.py; never in the app's image."""

"""A model's life after training: the run record, the MLflow registry, promotion through the gate, and the
experiments that compare variants of the recipe."""

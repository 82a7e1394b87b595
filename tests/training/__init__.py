"""Training (training/): the recipe, tracked runs, the registry and the gate, generalisation checks."""

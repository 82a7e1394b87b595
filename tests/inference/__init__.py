"""The model, its checkpoint and preprocessing (inference/), on the real model file."""

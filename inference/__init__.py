"""Inference: the CNN and its checkpoint format, the preprocessing that turns any drawing or photo into MNIST's
28x28 input, and one classification. The app reaches it through utils.py; training/ imports it directly."""

"""Synthetic data for training and checks: digits drawn as on the canvas and in common styles, and the drawings
that are not digits (letters, symbols, shapes, everyday doodles, scribbles), from templates and generators."""

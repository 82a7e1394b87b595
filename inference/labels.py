"""What the model can answer, in one place (no torch here: the storage layer imports it too).

python -c "from inference.labels import NOT_DIGIT, NOT_A_DIGIT; print(NOT_DIGIT, NOT_A_DIGIT)"
"""

from __future__ import annotations

CLASSES: tuple[int, ...] = tuple(range(10))
# "Not a digit" as the model's class index: the 11th output (letters, shapes, scribbles, several digits). The log
# stores a user's "not a digit" answer as this number too, wherever answers are counted as one column.
NOT_DIGIT = len(CLASSES)
# "Not a digit" as a user gives it: the feedback button's words (capitalised there) and what set_true_label takes.
NOT_A_DIGIT = "not a digit"
# The longest number read from one drawing (inference/number.py), and the most digits a number's row holds.
MAX_DIGITS = 8

"""Which labels a retraining set may trust, and the operator's review of the rest.

    python -c "from storage.trust import Trust; print(Trust.from_settings())"

A label is trusted unless it is one of these:
- **held**: it contradicts an answer the model gave with at least LABEL_HOLD_CONFIDENCE (a digit relabelled, or a
  digit called "not a digit"), and fewer than LABEL_CORROBORATION different labellers made that same correction
  (this answer → that label), and the operator has not accepted it. Thirty visitors who each call a crossed "7" a
  "2" are a writing style the model misreads; one visitor who calls 300 sevens "1" is held for the operator.
- **over the cap**: beyond the newest MAX_LABELS_PER_CLIENT of one labeller (the browser's visitor id, or the API
  client's hashed address), so no one client floods a retraining set.
- **rejected** by the operator on Stats: never trained on, never held again.
A number's row labelled with a number of as many digits gives one labelled digit per part, each judged so.
The same SQL feeds the retraining set (`Reads.iter_labelled`), the loop's count of usable new labels and the
operator's review list (storage/review.py), so the three cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from config.settings import settings

# Every labelled row with its image, but without reading the image: who labelled it, the answer it gives (-1 for
# "not a digit"), and whether it contradicts a confident answer. Each digit of a number labelled with a number of its
# length is a labelled example of its own (`part` > 0), judged the same way. Row-level facts only; `_RANKED` judges.
_JUDGED = """
  SELECT id, 0 AS part, created_at, predicted_digit, confidence, true_label, labelled_not_digit AS not_digit,
    model_version, labelled_at, label_review, coalesce(labelled_by, visitor, 'row:' || id) AS labeller,
    CASE WHEN labelled_not_digit THEN -1 ELSE true_label END AS answer,
    coalesce(is_digit, true) AND confidence >= %(hold)s AND (labelled_not_digit OR true_label <> predicted_digit)
      AS contradicts
  FROM predictions
  WHERE (true_label IS NOT NULL OR labelled_not_digit) AND image IS NOT NULL AND digits IS NULL
    AND label_review IS DISTINCT FROM 'rejected'
  UNION ALL
  SELECT id, part::int, created_at, (d->>'digit')::int, (d->>'confidence')::real,
    substr(true_number, part::int, 1)::int, false, model_version, labelled_at, label_review,
    coalesce(labelled_by, visitor, 'row:' || id), substr(true_number, part::int, 1)::int,
    (d->>'is_digit')::boolean AND (d->>'confidence')::real >= %(hold)s
      AND substr(true_number, part::int, 1)::int <> (d->>'digit')::int
  FROM predictions CROSS JOIN LATERAL jsonb_array_elements(digits) WITH ORDINALITY AS parts(d, part)
  WHERE true_number IS NOT NULL AND digits IS NOT NULL AND length(true_number) = jsonb_array_length(digits)
    AND label_review IS DISTINCT FROM 'rejected'
"""
# A labelled row's image: a digit's own, or the part's of a number (`part` 1, 2, ... counts a number's digits).
_IMAGE = "CASE WHEN r.part = 0 THEN p.image ELSE decode(p.digits -> (r.part - 1) ->> 'image', 'base64') END AS image"
# ranked: the judged rows with `held` and `nth` (1 = the labeller's newest among their held or their other rows).
_RANKED = f"""
WITH judged AS ({_JUDGED}),
corroborated AS (
  SELECT predicted_digit, answer FROM judged WHERE contradicts
  GROUP BY predicted_digit, answer HAVING count(DISTINCT labeller) >= %(corroboration)s
),
trusted AS (
  SELECT j.*, (j.contradicts AND j.label_review IS NULL AND c.answer IS NULL) AS held
  FROM judged j LEFT JOIN corroborated c USING (predicted_digit, answer)
),
ranked AS (
  SELECT *, row_number() OVER (PARTITION BY labeller, held ORDER BY labelled_at DESC NULLS LAST, id DESC, part) AS nth
  FROM trusted
)
"""
# The retraining set: every trusted row, and the held ones flagged (the snapshot lists them, trains on none).
LABELLED_SQL = (
    _RANKED
    + f"""SELECT r.id, r.part, r.created_at, r.predicted_digit, r.true_label, r.not_digit, {_IMAGE}, r.model_version,
  r.labeller, r.held
FROM ranked r JOIN predictions p USING (id) WHERE r.held OR r.nth <= %(cap)s ORDER BY r.id, r.part"""
)
COUNT_SQL = _RANKED + """SELECT count(*) AS labels, count(*) FILTER (WHERE held) AS held,
  count(*) FILTER (WHERE NOT held AND nth > %(cap)s) AS over_cap,
  count(*) FILTER (WHERE NOT held AND nth <= %(cap)s) AS trusted
FROM ranked WHERE labelled_at >= %(since)s"""
HELD_SQL = (
    _RANKED
    + f"""SELECT r.id, r.part, r.created_at, r.labelled_at, r.predicted_digit, r.confidence, r.answer, r.labeller,
  {_IMAGE}
FROM ranked r JOIN predictions p USING (id) WHERE r.held ORDER BY r.labelled_at DESC, r.id DESC, r.part
LIMIT %(limit)s"""
)


@dataclass(frozen=True)
class Trust:
    per_labeller: int = 2**62  # no cap
    hold_confidence: float = 2.0  # above any confidence: nothing held
    corroboration: int = 5

    @classmethod
    def from_settings(cls) -> Trust:
        current = settings()
        return cls(current.max_labels_per_client, current.label_hold_confidence, current.label_corroboration)

    def params(self) -> dict[str, Any]:
        return {"cap": self.per_labeller, "hold": self.hold_confidence, "corroboration": self.corroboration}

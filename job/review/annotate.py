"""The review of a run's flagged rows: the finance agent's notes and concerns, set on them.

A model reviews every flagged row (`agent.review_flagged`); the built-in offline reviewer,
whose notes depend only on the findings, is asked once per group of rows with the same
rule codes (`agent.review_offline`), each group shown by its most important row. The agent
(AG2) is imported only when there is something to review.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

from job.config import Config
from job.ledger.ingest import format_amount
from job.screening.flagged import FlaggedFrame

if TYPE_CHECKING:  # the agent is imported only when there is something to review
    from job.review.agent import ReviewOutcome

__all__ = ["Review", "annotate", "review_items", "review_groups"]

_SHOWN = ["txn_id", "date", "vendor", "amount_minor", "currency", "memo", "codes", "reasons"]


@dataclass(slots=True)
class Review:
    """What the review gave: its outcome (`agent.ReviewOutcome`, None when nothing was
    reviewed), summary, model usage (calls, prompt and completion tokens) and refusals."""

    outcome: ReviewOutcome | None = None
    summary: str = ""
    usage: tuple[int, int, int] = (0, 0, 0)
    refused: list[str] = field(default_factory=list)


async def annotate(flagged: FlaggedFrame, config: Config, db) -> Review:
    """Review the flagged rows; their notes and concerns are set on `flagged`."""
    from job.review.agent import review_flagged, review_offline

    if config.llm.offline:
        groups, codes_of = review_groups(flagged)
        outcome = await review_offline(groups, config.llm, db)
        flagged.group_notes = {codes_of[t]: note for t, note in outcome.notes.items() if t in codes_of}
    else:
        outcome = await review_flagged(review_items(flagged), config.llm, db)
        flagged.notes = outcome.notes
    flagged.concerns = outcome.concerns
    return Review(outcome, outcome.summary, (outcome.calls, outcome.prompt_tokens, outcome.completion_tokens), outcome.refused)


def review_items(flagged: FlaggedFrame) -> list:
    """Every flagged row as the agent is shown it (`agent.ReviewItem`), in rank order."""
    from job.review.agent import ReviewItem

    found = []
    for _, rows in flagged.in_rank_order(_SHOWN):
        found += [
            ReviewItem(t, d.isoformat(), v, format_amount(a, c), c, m, tuple(zip(codes, reasons)))
            for t, d, v, a, c, m, codes, reasons in rows
        ]
    return found


def review_groups(flagged: FlaggedFrame) -> tuple[list, dict[str, tuple[str, ...]]]:
    """(first item, how many) per group of rows with the same findings, in rank order; and
    the codes of each group by the id of its first item."""
    from job.review.agent import ReviewItem

    keys = flagged.items.select(key=pl.col("codes").list.join("\x1f"))["key"]  # per row
    ranked = keys.gather(flagged.order)
    firsts = flagged.order.gather(ranked.is_first_distinct().arg_true())  # the rows that come first in each group
    counts = dict(zip(*keys.value_counts(sort=False).get_columns()))
    codes_of: dict[str, tuple[str, ...]] = {}
    groups = []
    rows = flagged.items.select(_SHOWN)[firsts].rows()
    for (t, d, v, a, c, m, codes, reasons), key in zip(rows, keys.gather(firsts).to_list()):
        groups.append((ReviewItem(t, d.isoformat(), v, format_amount(a, c), c, m, tuple(zip(codes, reasons))), counts[key]))
        codes_of[t] = tuple(codes)
    return groups, codes_of

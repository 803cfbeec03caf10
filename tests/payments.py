"""A fraud-style use case with an entity column (card payments) and a synthetic log for it, for the entity
feature tests offline and online."""

from __future__ import annotations

import numpy as np
import pandas as pd

from flowline.use_case import UseCase


def payments_use_case(**changes) -> UseCase:
    """Card payments: the label is fraud, the entity the card, the time `at`, the amount summed per card."""
    return UseCase.model_validate({
        "name": "payments", "task": "binary", "data": {"path": "unused.csv"},
        "label": {"column": "fraud", "positive": "yes", "values": ["no", "yes"]},
        "id_columns": ["txn"], "time_column": "at",
        "columns": {"txn": {"type": "string"}, "card": {"type": "string"}, "at": {"type": "datetime"},
                    "amount": {"type": "number", "min": 0}},
        "features": {"entity_column": "card", "amount_columns": ["amount"]},
        "costs": {"false_negative": 10, "false_positive": 1},
        **changes,
    })


def transactions(seed: int = 0, cards: int = 300) -> pd.DataFrame:
    """Card payments over 60 days; a card in a burst (several payments within minutes) is likely fraud."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2026-01-01")
    for card in range(cards):
        times = sorted(rng.uniform(0, 60 * 86400, rng.integers(3, 12)))
        burst = rng.random() < 0.3
        if burst:
            at = rng.uniform(0, 59 * 86400)
            times = sorted(times + [at + rng.uniform(0, 1800) for _ in range(4)])
        for t in times:
            close = sum(abs(t - u) < 3600 for u in times) - 1
            fraud = rng.random() < (0.8 if close >= 2 else 0.05)
            rows.append({"txn": f"t{len(rows)}", "card": f"c{card}", "at": (start + pd.Timedelta(seconds=t)).isoformat(),
                         "amount": round(float(rng.lognormal(3, 1)), 2), "fraud": "yes" if fraud else "no"})
    return pd.DataFrame(rows)

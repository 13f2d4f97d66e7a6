"""Balanced sampling over sources and categories for the stage-2 dataset.

Every source gets the same total probability mass, and inside a source every category gets the same mass, so a
large source cannot drown a small one and a common finding cannot drown a rare one:

    weight(item) = 1 / (n_sources * n_categories_in_source * n_items_in_category)

A category is an item's class for single-label sources; for multi-label sources it is the item's rarest positive
class (by count of positives within the source), or ``"none"`` when nothing is positive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["NO_CATEGORY", "item_categories", "balanced_weights", "sampling_report", "format_sampling_table"]

NO_CATEGORY = "none"


def item_categories(labels: Sequence[Sequence[float | None]], class_names: Sequence[str]) -> list[str]:
    """The category of each item of one source: its rarest positive class, else :data:`NO_CATEGORY`.

    Ties between equally rare classes go to the class listed first. For a single-label source (one-hot labels)
    this is simply the item's class.

    Example:
        >>> item_categories([[1, 1], [1, 0], [0, None]], ["common", "rare"])
        ['rare', 'common', 'none']
    """
    positives = Counter(c for label in labels for c, value in enumerate(label) if value == 1)
    categories = []
    for label in labels:
        present = [c for c, value in enumerate(label) if value == 1]
        categories.append(class_names[min(present, key=lambda c: (positives[c], c))] if present else NO_CATEGORY)
    return categories


def balanced_weights(items: Sequence[Mapping[str, Any]]) -> list[float]:
    """Per-item sampling weights that give every source, and every category inside a source, equal mass.

    Args:
        items: items with ``source`` and ``category`` keys (one split).

    Returns:
        ``1 / (n_sources * n_categories_in_source * n_items_in_category)`` per item; they sum to 1.

    Example:
        >>> balanced_weights([{"source": "a", "category": "x"}, {"source": "a", "category": "y"},
        ...                   {"source": "a", "category": "y"}, {"source": "b", "category": "z"}])
        [0.25, 0.125, 0.125, 0.5]
    """
    per_category = Counter((item["source"], item["category"]) for item in items)
    per_source = Counter(source for source, _ in per_category)
    n_sources = len(per_source)
    return [1.0 / (n_sources * per_source[item["source"]] * per_category[(item["source"], item["category"])])
            for item in items]  # fmt: skip


def sampling_report(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (source, category) of weighted items: item count, weight per item, expected share of draws.

    Rows keep the order in which sources and categories first appear.
    """
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for item in items:
        key = (item["source"], item["category"])
        row = rows.setdefault(key, {"source": key[0], "category": key[1], "items": 0,
                                    "weight_per_item": item["weight"], "expected_share": 0.0})  # fmt: skip
        row["items"] += 1
        row["expected_share"] += item["weight"]
    return list(rows.values())


def format_sampling_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The report rows as an aligned text table (shares in percent)."""
    header = ("source", "category", "items", "weight/item", "share %")
    lines = [(str(r["source"]), str(r["category"]), str(r["items"]), f"{r['weight_per_item']:.3e}",
              f"{100 * r['expected_share']:.2f}") for r in rows]  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in
                               enumerate(zip(row, widths, strict=True))) for row in [header, *lines])  # fmt: skip

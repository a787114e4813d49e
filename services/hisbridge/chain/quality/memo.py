"""Per-table memoisation for the quality plans (its own module: the rules and the plans both use it)."""
from __future__ import annotations

from typing import Any, Callable

from hisbridge.catalog.model import Table


def per_table(build: Callable[[Table], Any]) -> Callable[[Table], Any]:
    """Memoise build(table) per Table object (the entry holds the table, so its id cannot be reused)."""
    cache: dict[int, tuple[Table, Any]] = {}

    def get(table: Table) -> Any:
        hit = cache.get(id(table))
        if hit is not None and hit[0] is table:
            return hit[1]
        value = build(table)
        if len(cache) >= 512:  # tests build many catalogs; a worker has a few dozen tables
            cache.clear()
        cache[id(table)] = (table, value)
        return value
    return get

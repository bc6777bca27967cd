"""A dataset's classes as data: the category ids its annotations carry, their names, and the
contiguous 0-based class index of each. One mapping, built once per dataset, used by every
reader, writer and the training set - never ``category_id - 1``: real COCO sets have sparse ids
(val2017 runs 1..90 with gaps), some start at 0, and names can repeat.

The index order is ascending category id: what training has always used (the model's class k
is the k-th smallest id) and what a YOLO ``names`` list written from a COCO set follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from ..errors import UsageError


@dataclass(frozen=True)
class Categories:
    """``ids`` ascending, ``names`` in the same order (index k <-> ids[k] <-> names[k])."""

    ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def of(cls, coco: dict, what: str = "the annotations") -> Categories:
        """The categories of a COCO instances dict; UsageError for ids that are not integers
        or that repeat."""
        cats = coco.get("categories") or []
        ids = [c.get("id") for c in cats]
        if any(not isinstance(i, int) or isinstance(i, bool) for i in ids):
            raise UsageError(f"{what}: every category needs an integer 'id'")
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise UsageError(f"{what}: category id {dup[0]} appears more than once")
        ordered = sorted(cats, key=lambda c: c["id"])
        return cls(tuple(c["id"] for c in ordered),
                   tuple(str(c.get("name", c["id"])) for c in ordered))

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, category_id: int) -> int:
        """The 0-based class index of ``category_id`` (KeyError when the set has no such id)."""
        return self._index[category_id]

    def name(self, category_id: int) -> str:
        return self.names[self._index[category_id]]

    @cached_property
    def _index(self) -> dict[int, int]:
        return {c: k for k, c in enumerate(self.ids)}

    def distinct_names(self) -> list[str]:
        """The names with a repeated one made unique by its id (``car (id 7)``): for layouts
        that key classes by name (Pascal VOC), where two classes of one name would merge."""
        seen = {n: self.names.count(n) for n in self.names}
        return [n if seen[n] == 1 else f"{n} (id {i})" for n, i in zip(self.names, self.ids)]

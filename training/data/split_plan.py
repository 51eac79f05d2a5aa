"""Train / val / test splits of image datasets that never leak test images into training.

A dataset's own split lists (VOC's ImageSets/Main, train/ val/ test/ folders, a CSV `split` column)
are used as they are. Only what is missing is carved, deterministically by seed: a missing val is
taken from train, never from test; a missing test is taken from train too (saying so). Lists that
overlap are refused. Without any list the whole set is split 80/10/10 by seed, as before.

Every plan says in one line what it did, so train-cam and eval-cam can print where each split came
from and how large it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

import numpy as np
from runtime.errors import DataError

__all__ = ["SplitPlan", "plan_splits", "cap", "SPLITS", "CARVE_FRACTION"]

SPLITS = ("train", "val", "test")
CARVE_FRACTION = 0.1  # share of train carved for a missing val (and for a missing test)
Item = TypeVar("Item")


@dataclass
class SplitPlan:
    """Item lists per split and a sentence saying where each came from."""

    train: list
    val: list
    test: list
    description: str

    def sizes(self) -> str:
        return f"{len(self.train)} train / {len(self.val)} val / {len(self.test)} test"


def _carve(items: list, seed: int, salt: int) -> tuple[list, list]:
    """(rest, carved): CARVE_FRACTION of items (at least one when there are two or more), by seed."""
    if len(items) < 2:
        return items, []
    count = max(1, int(round(CARVE_FRACTION * len(items))))
    chosen = set(np.random.default_rng([seed, salt]).permutation(len(items))[:count].tolist())
    return ([x for i, x in enumerate(items) if i not in chosen], [x for i, x in enumerate(items) if i in chosen])


def _refuse_overlaps(lists: dict[str, list]) -> None:
    seen = list(lists.items())
    for i, (a, items_a) in enumerate(seen):
        for b, items_b in seen[i + 1:]:
            common = sorted(set(map(str, items_a)) & set(map(str, items_b)))
            if common:
                raise DataError(f"the {a} and {b} splits share {len(common)} image(s) (first: "
                                 f"{common[0]}); a split that overlaps another would leak test images into "
                                 "training. Fix the lists so that each image is in one split only")


def plan_splits(everything: Sequence[Item], lists: dict[str, list] | None, seed: int, where: str) -> SplitPlan:
    """Splits from the dataset's own lists (`lists`: some of train, val, trainval, test), carving only what
    is missing; or, without lists, a seeded 80/10/10 split of `everything`. `where` names the lists'
    origin in the description (e.g. "ImageSets/Main")."""
    lists = {k: list(v) for k, v in (lists or {}).items() if v is not None}
    if not lists:
        order = np.random.default_rng(seed).permutation(len(everything))
        n_train, n_val = int(round(0.8 * len(order))), int(round(0.1 * len(order)))
        parts = [sorted(order[:n_train]), sorted(order[n_train:n_train + n_val]), sorted(order[n_train + n_val:])]
        train, val, test = ([everything[i] for i in part] for part in parts)
        return SplitPlan(train, val, test, f"no split lists in {where}: a random 80/10/10 split (seed {seed})")
    if "train" in lists:
        train, train_from = lists["train"], "train"
    elif "trainval" in lists:
        held_out = set(map(str, lists.get("val", [])))
        train = [x for x in lists["trainval"] if str(x) not in held_out]
        train_from = "trainval" + (" minus val" if held_out else "")
    else:
        raise DataError(f"{where} has {', '.join(sorted(lists))} but no train or trainval list to train on")
    said = [f"train from {train_from}"]
    if "val" in lists:
        val = lists["val"]
        said.append("val from val")
    else:
        train, val = _carve(train, seed, 1)
        said.append(f"val carved from train ({CARVE_FRACTION:.0%}, seed {seed})")
    if "test" in lists:
        test = lists["test"]
        said.append("test from test")
    else:
        train, test = _carve(train, seed, 2)
        said.append(f"test carved from train ({CARVE_FRACTION:.0%}, seed {seed}): no test list")
    _refuse_overlaps({"train": train, "val": val, "test": test})
    plan = SplitPlan(train, val, test, "")
    plan.description = f"splits from {where}: {'; '.join(said)}"
    return plan


def cap(items: list, limit: int | None, seed: int) -> list:
    """At most `limit` items, a seeded sample kept in the list's order (lists are often sorted by class,
    so the first N would not be a fair sample)."""
    if not limit or limit >= len(items):
        return items
    keep = sorted(np.random.default_rng([seed, 3]).permutation(len(items))[:limit].tolist())
    return [items[i] for i in keep]

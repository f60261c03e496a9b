"""A decider driver that keeps map items apart, the way the store does.

Each decision sees only the items `items_wanted` names, so the tests exercise the
partial loading the real store relies on.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tests.unit.domain._runs import Run
from treadle.domain._map_query import items_wanted
from treadle.domain.decider import decide
from treadle.domain.events import CancelMapItems, Decision, DispatchTask, Event
from treadle.domain.state import MapItem, RunState, TaskStatus


def load_items(state: RunState, store: dict[tuple[str, int], MapItem], event: Event) -> RunState:
    """The state with just the wanted items in it, as `SqlStore.apply` builds it."""
    query = items_wanted(state, event)
    keys = set(query.keys)
    keys.update(key for key in store if key[0] in query.whole)
    for task_id, start, count in query.pending:
        pending = sorted(
            key
            for key, item in store.items()
            if key[0] == task_id and key[1] >= start and item.status is TaskStatus.PENDING
        )
        keys.update(pending[:count])
    items = [store[key] for key in sorted(keys) if key in store]
    return msgspec.structs.replace(state, map_items=items)


class ItemRun(Run):
    """A `Run` whose map items live in `self.items`, loaded per event as the store does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.items: dict[tuple[str, int], MapItem] = {}
        self.loaded: list[int] = []

    def apply(self, event: Event) -> Decision:
        state = load_items(self.state, self.items, event)
        self.loaded.append(len(state.map_items))
        self.last = decide(self.workflow, state, event, self.now)
        for item in self.last.state.map_items:
            self.items[(item.task_id, item.index)] = item
        for command in self.last.commands:
            if isinstance(command, CancelMapItems):
                self._cancel_items(command.task_id)
        self.state = msgspec.structs.replace(self.last.state, map_items=[])
        return self.last

    def _cancel_items(self, task_id: str) -> None:
        """What the store does for `CancelMapItems`: unfinished items become cancelled."""
        for key, item in self.items.items():
            if key[0] == task_id and not item.status.is_terminal:
                self.items[key] = msgspec.structs.replace(item, status=TaskStatus.CANCELLED)

    def dispatched(self) -> list[DispatchTask]:
        return [c for c in self.commands if isinstance(c, DispatchTask)]

    def item(self, task_id: str, index: int) -> MapItem:
        return self.items[(task_id, index)]

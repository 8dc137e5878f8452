"""Server-side apply's field ownership: who set each field, so that a field an applier stops sending goes away.

kube-apiserver records, per object, the fields each manager set (``managedFields``): an apply owns exactly the
fields it sent, an update (create, replace, merge or JSON patch) takes the fields it changed. Applying again
without a field removes it, unless another manager owns it too; an apply that would change a field another
manager owns is a 409 conflict unless forced.

Simplified here: fields are leaves of the object's maps, and every list is one atomic field (the real server
merges lists such as ``containers`` by key); ownership lives beside the objects rather than in
``metadata.managedFields``; manager identity is ``<name>/Apply`` or ``<name>/Update``, as the real one's
(manager, operation) pairs.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.kube.patches import merge_patch

#: a field: the keys from the object's root to a leaf
Path = tuple[str, ...]
#: fields nobody owns: identity, what the server sets, and the status subresource
_UNOWNED: set[Path] = {
    ("apiVersion",),
    ("kind",),
    ("status",),
    *(("metadata", key) for key in ("name", "namespace", "uid", "resourceVersion", "generation")),
    *(("metadata", key) for key in ("creationTimestamp", "deletionTimestamp", "managedFields")),
}


class ApplyConflict(Exception):
    """An apply, not forced, would change fields another manager owns."""

    def __init__(self, conflicts: list[tuple[str, Path]]) -> None:
        self.conflicts = conflicts
        listed = "; ".join(f'conflict with "{manager.split("/")[0]}": .{".".join(path)}' for manager, path in conflicts)
        super().__init__(f"Apply failed with {len(conflicts)} conflict{'s' if len(conflicts) > 1 else ''}: {listed}")


def fields(obj: Any, prefix: Path = ()) -> set[Path]:
    """The leaf fields of ``obj`` (maps are walked, lists and scalars are leaves), less the unowned ones."""
    if prefix in _UNOWNED:
        return set()
    if isinstance(obj, dict) and obj:
        return set().union(*(fields(value, (*prefix, str(key))) for key, value in obj.items()))
    return {prefix} if prefix else set()


def _at(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return _MISSING
        obj = obj[key]
    return obj


_MISSING = object()


def _remove(obj: dict[str, Any], path: Path) -> None:
    parents = [obj]
    for key in path[:-1]:
        child = parents[-1].get(key)
        if not isinstance(child, dict):
            return
        parents.append(child)
    parents[-1].pop(path[-1], None)
    # a map left empty by the removal goes too, as the server prunes it
    for depth in range(len(path) - 1, 0, -1):
        if parents[depth]:
            break
        parents[depth - 1].pop(path[depth - 1], None)


def _overlaps(path: Path, others: set[Path]) -> bool:
    return any(path[: len(other)] == other or other[: len(path)] == path for other in others)


class FieldOwners:
    """Field ownership of every object, keyed as the cluster keys objects."""

    def __init__(self) -> None:
        self._owners: dict[tuple[str, str, str], dict[str, set[Path]]] = {}

    def owners(self, key: tuple[str, str, str]) -> dict[str, set[Path]]:
        """A copy of ``key``'s managers and their fields."""
        return copy.deepcopy(self._owners.get(key, {}))

    def apply(
        self, key: tuple[str, str, str], manager: str, existing: dict[str, Any], applied: dict[str, Any], *, force: bool
    ) -> tuple[dict[str, Any], dict[str, set[Path]]]:
        """The object after ``manager`` applies ``applied``, and the ownership after it (not yet recorded).

        Raises:
            ApplyConflict: without ``force``, the apply changes a field another manager owns.
        """
        me = f"{manager}/Apply"
        table = self.owners(key)
        sent = fields(applied)
        merged = merge_patch(existing, applied)
        changed = {path for path in sent if _at(existing, path) != _at(merged, path)}
        conflicts = [
            (other, path) for other, owned in sorted(table.items()) if other != me for path in sorted(changed & owned)
        ]
        if conflicts and not force:
            raise ApplyConflict(conflicts)
        for path in table.get(me, set()) - sent:
            others = set().union(*(owned for other, owned in table.items() if other != me))
            if not _overlaps(path, sent) and path not in others:
                _remove(merged, path)
        for other in table:
            if other != me:
                table[other] -= changed
        table[me] = sent
        return merged, {name: owned for name, owned in table.items() if owned}

    def record(self, key: tuple[str, str, str], table: dict[str, set[Path]]) -> None:
        """Keep ``table`` as ``key``'s ownership (what :meth:`apply` answered, once the object is stored)."""
        self._owners[key] = table

    def updated(self, key: tuple[str, str, str], manager: str, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        """``manager`` wrote ``new`` over ``old`` (None: created it) other than by an apply: it owns what changed."""
        me = f"{manager}/Update"
        table = {} if old is None else self.owners(key)
        changed = fields(new) if old is None else {p for p in fields(new) | fields(old) if _at(old, p) != _at(new, p)}
        for other in table:
            if other != me:
                table[other] -= changed
        table[me] = table.get(me, set()) | {path for path in changed if _at(new, path) is not _MISSING}
        self._owners[key] = {name: owned for name, owned in table.items() if owned}

    def forget(self, key: tuple[str, str, str]) -> None:
        """``key`` was deleted."""
        self._owners.pop(key, None)

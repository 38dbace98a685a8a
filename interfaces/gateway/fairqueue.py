"""Weighted fair queueing of waiting requests: hierarchical start-time fair queueing (H-SFQ).

Goyal, Vin and Cheng, "Start-time Fair Queueing" (SIGCOMM 1996) and its hierarchical form
(OSDI 1996), with every request one unit of work: two levels, fair-share groups under the root
and tenants under their group. At each level a backlogged child (one with requests waiting
below it) carries a *start tag*; the child with the smallest start tag is served next (ties:
the one backlogged first). Serving a unit of child ``c`` under a node sets the node's virtual
time to ``c``'s start tag and ``c``'s finish tag to ``start + 1 / weight``; a child that becomes
backlogged starts at ``max(node's virtual time, its last finish tag)``, so an idle child neither
banks credit nor is punished for what it used while nobody else waited. While two children stay
backlogged they are served in proportion to their weights, to within one unit.

A tenant without a group is its own group, of its weight (the caller gives it a group key of
its own). Pure: no clock, no I/O; the scheduler (``scheduler.py``) owns the slots.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class _Child:
    weight: int
    start: float = 0.0  # start tag of its next unit, while backlogged
    finish: float = 0.0  # finish tag of its last unit served
    since: int = 0  # when it last became backlogged: breaks ties in arrival order


@dataclass(slots=True, eq=False)
class _Group(_Child):
    virtual: float = 0.0  # the virtual time among its tenants
    members: int = 0  # tenants placed in it
    backlogged: dict[Hashable, _Tenant] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class _Tenant(_Child):
    group: Hashable = None
    home: _Group = field(default_factory=lambda: _Group(weight=1))  # the group's state
    queue: deque[Any] = field(default_factory=deque)


def _first(children: dict[Hashable, Any]) -> tuple[Hashable, Any]:
    return min(children.items(), key=lambda kv: (kv[1].start, kv[1].since))


class FairQueue:
    """Waiting items of tenants, taken out in weighted fair order (H-SFQ, unit-sized)."""

    def __init__(self) -> None:
        self.virtual = 0.0  # the root's virtual time, among groups
        self.tenants: dict[Hashable, _Tenant] = {}
        self.groups: dict[Hashable, _Group] = {}
        self._backlogged: dict[Hashable, _Group] = {}
        self._arrivals = 0
        self.length = 0

    # -- placement -------------------------------------------------------------------------

    def place(self, tenant: Hashable, group: Hashable, weight: int, group_weight: int) -> None:
        """Put ``tenant`` (weight ``weight``) in ``group`` (weight ``group_weight``), or update
        either weight; a tenant moved while it waits takes its queue to its new group."""
        g = self.groups.get(group)
        if g is None:
            g = self.groups[group] = _Group(weight=group_weight)
        g.weight = group_weight
        t = self.tenants.get(tenant)
        if t is None:
            self.tenants[tenant] = _Tenant(weight=weight, group=group, home=g)
            g.members += 1
            return
        t.weight = weight
        if t.group == group:
            return
        waiting = bool(t.queue)
        if waiting:
            self._unbacklog(tenant, t)
        self._leave_group(t)
        t.group, t.home, t.finish = group, g, 0.0
        g.members += 1
        if waiting:
            self._backlog(tenant, t)

    def placed(self, tenant: Hashable) -> bool:
        return tenant in self.tenants

    def group_of(self, tenant: Hashable) -> Hashable:
        return self.tenants[tenant].group

    def forget(self, tenant: Hashable) -> None:
        """Drop an idle tenant's state (and its group's, once empty); not one that waits."""
        t = self.tenants.get(tenant)
        if t is None or t.queue:
            return
        del self.tenants[tenant]
        self._leave_group(t)

    def _leave_group(self, t: _Tenant) -> None:
        g = t.home
        g.members -= 1
        if g.members == 0 and not g.backlogged:
            del self.groups[t.group]

    # -- queueing --------------------------------------------------------------------------

    def push(self, tenant: Hashable, item: Any) -> None:
        """Queue ``item`` behind the tenant's earlier ones (the tenant must be placed)."""
        t = self.tenants[tenant]
        t.queue.append(item)
        self.length += 1
        if len(t.queue) == 1:
            self._backlog(tenant, t)

    def pop(self) -> tuple[Hashable, Any] | None:
        """The next (tenant, item) in fair order, or ``None`` when nothing waits."""
        if not self._backlogged:
            return None
        group, g = _first(self._backlogged)
        tenant, t = _first(g.backlogged)
        item = t.queue.popleft()
        self.length -= 1
        self._serve(group, g, tenant, t)
        return tenant, item

    def remove(self, tenant: Hashable, item: Any) -> bool:
        """Take a waiting item out (its client left); ``False`` if it no longer waits."""
        t = self.tenants.get(tenant)
        if t is None or item not in t.queue:
            return False
        t.queue.remove(item)
        self.length -= 1
        if not t.queue:
            self._unbacklog(tenant, t)
        return True

    def charge(self, tenant: Hashable) -> bool:
        """Account a unit admitted without waiting (nothing was queued): the tenant and its
        group advance their tags as if served, so virtual time follows the work done.
        ``False`` (and nothing done) if the tenant is not placed."""
        t = self.tenants.get(tenant)
        if t is None:
            return False
        g = t.home
        if not t.queue:
            t.start = max(g.virtual, t.finish)
        if not g.backlogged:
            g.start = max(self.virtual, g.finish)
        self._serve(t.group, g, tenant, t)
        return True

    def waiting(self, tenant: Hashable) -> int:
        t = self.tenants.get(tenant)
        return 0 if t is None else len(t.queue)

    def items(self) -> Iterator[tuple[Hashable, Any]]:
        for tenant, t in self.tenants.items():
            for item in t.queue:
                yield tenant, item

    # -- tags ------------------------------------------------------------------------------

    def _backlog(self, tenant: Hashable, t: _Tenant) -> None:
        g = t.home
        self._arrivals += 1
        t.start, t.since = max(g.virtual, t.finish), self._arrivals
        g.backlogged[tenant] = t
        if len(g.backlogged) == 1:
            g.start, g.since = max(self.virtual, g.finish), self._arrivals
            self._backlogged[t.group] = g

    def _unbacklog(self, tenant: Hashable, t: _Tenant) -> None:
        g = t.home
        g.backlogged.pop(tenant, None)
        if not g.backlogged:
            self._backlogged.pop(t.group, None)

    def _serve(self, group: Hashable, g: _Group, tenant: Hashable, t: _Tenant) -> None:
        g.virtual = t.start
        t.finish = t.start + 1 / t.weight
        if t.queue:
            t.start = t.finish
        else:
            g.backlogged.pop(tenant, None)
        self.virtual = g.start
        g.finish = g.start + 1 / g.weight
        if g.backlogged:
            g.start = g.finish
        else:
            self._backlogged.pop(group, None)

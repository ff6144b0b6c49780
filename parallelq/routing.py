"""Route: where a call's task Sessions go (the primary or a replica), and the snapshot they import.

parallel() and aparallel() open one Route per call, before any of its tasks
exists: for consistent=True it exports the call's Snapshot, which the call
closes when it ends, or its scope's teardown if the call never got to (an
aparallel() whose coroutine was dropped). Each task opens its Session through
its Route, in its own thread, when it first uses one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import orm

from parallelq import replicas, sessions
from parallelq.snapshot import Snapshot, check_exportable

if TYPE_CHECKING:
    from parallelq.scoping import Scope


class Route:
    """Where the Sessions of a call's tasks are bound, and the snapshot they import, if any."""

    def __init__(
        self,
        using: replicas.Using = "primary",
        snapshot: Snapshot | None = None,
        owner: Scope | None = None,
    ) -> None:
        self.using = using
        self.snapshot = snapshot
        self._owner = owner  # the scope holding the snapshot this Route exported

    def __repr__(self) -> str:
        return f"<parallelq.Route {self.using} {self.snapshot!r}>"

    @property
    def exported(self) -> bool:
        """Return True if this Route exported its snapshot, which close() closes."""
        return self._owner is not None

    def new_session(self, bind: sa.Engine | sa.Connection, task: Any) -> orm.Session:
        """Return a Session for `task`, whose scope binds Sessions to `bind`.

        On the snapshot's Engine if there is one (a replica's, if the call runs
        on a replica), else on the next replica for "replica", else on `bind`.
        A Connection (the test's, sharing.py) is used as it is: tasks there
        see the test's own rows.
        """
        snapshot = self.snapshot
        if snapshot is not None:
            bind = snapshot.engine
        elif self.using != "primary" and isinstance(bind, sa.Engine):
            bind = replicas.route(self.using, bind)
        session = sessions.new_session(sessions.TaskSession, bind, task=task)
        if snapshot is not None:
            snapshot.attach(session)
        return session

    def close(self) -> None:
        """Close the snapshot this Route exported, unless the scope's teardown has: once."""
        owner, snapshot = self._owner, self.snapshot
        if owner is not None and snapshot is not None and owner.release(snapshot):
            snapshot.close()


PRIMARY = Route()
REPLICA = Route("replica")


def for_task(fn: Callable[..., Any], route: Route) -> Route:
    """Return the Route of `fn`'s task in a call routed by `route`, or REPLICA if fn is marked so.

    calls.py refuses a marked callable in a consistent call on the primary, so
    a task that goes elsewhere never leaves its call's snapshot.
    """
    if replicas.using_of(fn, route.using) == route.using:
        return route
    return REPLICA


def open_route(
    active: Scope,
    *,
    consistent: bool,
    using: replicas.Using,
    timeout: float | None,
    outer: Route | None = None,
) -> Route:
    """Return the Route of one call's tasks; with `consistent`, export the snapshot they import.

    Args:
        timeout: the most seconds to wait for the snapshot's pooled connection.
        outer: the Route of the task the call is made in, if any: a consistent
            call inside a consistent call's task, to the same `using`, shares
            that snapshot, so the whole tree of calls reads one state.

    Raises:
        ParallelQueryError: the database cannot export a snapshot.
        Timeout: no connection came free for it within `timeout`.
        NoScopeError: the scope was closed meanwhile (the snapshot is closed).
    """
    if not consistent:
        return PRIMARY if using == "primary" else REPLICA
    if outer is not None and outer.snapshot is not None and outer.using == using:
        return Route(using, outer.snapshot)  # not exported here: the outer call closes it
    bind = active.bind
    if isinstance(bind, sa.Connection):
        # A test's transaction (sharing.py): its tasks run one by one inside it,
        # which cannot import a snapshot, and read what it reads.
        check_exportable(bind.engine)
        return PRIMARY if using == "primary" else REPLICA
    snapshot = Snapshot.export(replicas.route(using, bind), timeout=timeout)
    active.hold(snapshot)
    return Route(using, snapshot, active)

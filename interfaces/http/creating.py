"""Creating requests: run once per ``Idempotency-Key``, answered 201 with what they created."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from application.auth import Principal
from application.idempotency import Created
from application.store import EventStore
from interfaces.db.stores import IdempotencyConflictError, IdempotencyStore

if TYPE_CHECKING:  # not imported at run time: serve's projections process runs no web app
    from fastapi import Request, Response
    from pydantic import BaseModel


def idempotency_key(request: Request) -> str | None:
    return request.headers.get("idempotency-key") or None


class CreateOnce:
    """Runs a creating command once per ``Idempotency-Key``: a retry gets the first answer.

    A retry whose first request saved its events but died before its response was stored
    (``IdempotencyStore``) is answered from the ``Created`` record, as GET would answer.
    """

    def __init__(self, idempotency: IdempotencyStore, store: EventStore) -> None:
        self.idempotency = idempotency
        self.store = store

    def __call__(
        self,
        caller: Principal,
        request: Request,
        response: Response,
        body: BaseModel,
        create: Callable[[], BaseModel],
        recover: Callable[[Created], BaseModel],
    ) -> Any:
        """Run ``create`` (honouring ``Idempotency-Key``) and answer 201 with its result.

        ``recover`` builds the same answer for a retry whose first request created the
        resource but died before its response was stored: from the ids (and once-shown secret)
        that the event store recorded with the save. The resource is shown as it is now.
        """

        def run() -> tuple[int, Any]:
            return 201, create().model_dump(mode="json")

        def rerun(created: Created) -> tuple[int, Any]:
            return 201, recover(created).model_dump(mode="json")

        key = idempotency_key(request)
        if key is None:
            status, payload = run()
        else:
            # The body as pydantic writes it: a number beyond 64 bits must reach the command,
            # which refuses it as a 400, rather than fail the fingerprint (orjson) as a 500.
            fingerprint = {"path": request.url.path, "body": body.model_dump_json()}
            status, payload = self.idempotency.run(caller.actor.id, key, fingerprint, run, rerun)
        response.status_code = status
        return payload

    def created_id(self, created: Created, cls: type[Aggregate]) -> UUID:
        """The id of the ``cls`` aggregate that a recorded request created."""
        for ident in created.ids:
            if self.store.find(cls, ident) is not None:
                return ident
        raise IdempotencyConflictError(  # no command saves without creating what it returns
            "the request with this Idempotency-Key was saved, but what it created is not found"
        )


def shown_once(created: Created) -> str:
    """The once-shown secret of a recorded request (always saved with what shows one)."""
    if created.secret is None:
        raise IdempotencyConflictError(
            "the request with this Idempotency-Key was saved without its secret: "
            f"it created {', '.join(map(str, created.ids))}"
        )
    return created.secret

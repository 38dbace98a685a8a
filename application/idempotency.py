"""The Idempotency-Key claim a request holds while its command runs.

A creating request claims its (caller, Idempotency-Key) before it runs. The claim is completed in
two places: the event store marks it *committed* in the very statement that saves the command's
events (with the ids of the aggregates created, and a once-shown secret sealed), and the request
stores its full response after that. A process that dies between the two leaves a claim that
says what was created, so a retry can answer with it: the save and the mark are one
transaction, so there is no moment at which a resource exists that the claim doesn't name.

The claim travels to the save in a context variable rather than through every use case's
signature: ``EventStore.commit`` reads it, whichever command commits.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

from application.errors import ApplicationError


@dataclass(frozen=True, slots=True)
class Claim:
    """A request's hold on one Idempotency-Key; ``token`` tells this hold from a later one."""

    scope: str
    key: str
    token: UUID


@dataclass(frozen=True, slots=True)
class ClaimWrite:
    """What the event store records with the events of a claimed request.

    ``secret`` is a once-shown secret (an API key's token), sealed: ``(wrapped data key,
    ciphertext)``. It is kept only as long as the idempotency record (24 h), like the response.
    """

    claim: Claim
    secret: tuple[bytes, bytes] | None = None


@dataclass(frozen=True, slots=True)
class Created:
    """A claimed request whose events were saved but whose response was never stored."""

    ids: list[UUID]  # the aggregates its saves created (version 1), in order
    secret: str | None  # its once-shown secret, if it had one


# Set by the HTTP layer around a claimed request's command; read by ``EventStore.commit``.
current_claim: ContextVar[Claim | None] = ContextVar("idempotency_claim", default=None)


class ClaimLostError(ApplicationError):
    """A retry took over this request's claim (its lease ran out); its save was refused."""

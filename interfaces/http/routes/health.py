"""Health."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: answers ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}

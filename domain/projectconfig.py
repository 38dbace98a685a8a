"""The ProjectConfig aggregate: a tenant's global inference settings (seed 002's project
configuration), which the gateway applies to the tenant's chat completions."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.base import Actor, InvalidValueError, name_id
from domain.pricing import MODEL_SLUG
from domain.values import MAX_TOKENS, BoundedInt, check_flag

MAX_TOKENS_SETTING = BoundedInt(1, MAX_TOKENS, "{field} must be a whole number of tokens from 1")
# The settings a project may fix, with the bounds of OpenAI's chat completions request.
NUMBER_BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
}
SETTINGS = ("model", "temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty")
DEFAULT_ALLOW_OVERWRITE = True  # until a project says otherwise, each request's settings stand


def check_setting(field: str, value: object) -> Any:
    """One inference setting: a model slug, a token count or a number within OpenAI's bounds."""
    if field == "model":
        return MODEL_SLUG.check(field, value)
    if field == "max_tokens":
        return MAX_TOKENS_SETTING.check(field, value)
    if field not in NUMBER_BOUNDS:
        raise InvalidValueError(field, f"{field} is not a project setting")
    low, high = NUMBER_BOUNDS[field]
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise InvalidValueError(field, f"{field} must be a number")
    if not low <= value <= high:  # type: ignore[operator]
        raise InvalidValueError(field, f"{field} must be between {low:g} and {high:g}")
    return value


def check_settings(settings: Mapping[str, object]) -> dict[str, Any]:
    return {k: check_setting(k, v) for k, v in settings.items()}


class ProjectConfig(Aggregate):
    """A tenant's project configuration: whether requests may set their own inference
    settings (``allow_overwrite``), and the project's own settings."""

    @staticmethod
    def create_id(tenant_id: UUID) -> UUID:
        return name_id("project-config", tenant_id)

    @event("Created")
    def __init__(
        self, tenant_id: UUID, allow_overwrite: bool, settings: dict[str, Any], actor: Actor
    ) -> None:
        self.tenant_id = tenant_id
        self.allow_overwrite = allow_overwrite
        self.settings = settings

    @classmethod
    def create(
        cls,
        tenant_id: UUID,
        allow_overwrite: bool | None,
        changes: Mapping[str, object | None],
        actor: Actor,
    ) -> ProjectConfig:
        """The first configuration of a project: defaults changed by ``changes``."""
        flag = DEFAULT_ALLOW_OVERWRITE if allow_overwrite is None else allow_overwrite
        unknown = [k for k in changes if k not in SETTINGS]
        if unknown:
            raise InvalidValueError(unknown[0], f"{unknown[0]} is not a project setting")
        settings = check_settings({k: v for k, v in changes.items() if v is not None})
        return cls(
            tenant_id=tenant_id,
            allow_overwrite=check_flag("allow_overwrite", flag),
            settings=settings,
            actor=actor,
        )

    def update(
        self, allow_overwrite: bool | None, changes: Mapping[str, object | None], actor: Actor
    ) -> None:
        """Change the settings named in ``changes`` (``None`` removes one); ``allow_overwrite``
        ``None`` keeps it. A change that changes nothing records nothing."""
        flag = self.allow_overwrite if allow_overwrite is None else allow_overwrite
        flag = check_flag("allow_overwrite", flag)
        settings = dict(self.settings)
        for name, value in changes.items():
            if name not in SETTINGS:
                raise InvalidValueError(name, f"{name} is not a project setting")
            if value is None:
                settings.pop(name, None)
            else:
                settings[name] = check_setting(name, value)
        if (flag, settings) != (self.allow_overwrite, self.settings):
            self._updated(allow_overwrite=flag, settings=settings, actor=actor)

    @event("Updated")
    def _updated(self, allow_overwrite: bool, settings: dict[str, Any], actor: Actor) -> None:
        self.allow_overwrite = allow_overwrite
        self.settings = settings

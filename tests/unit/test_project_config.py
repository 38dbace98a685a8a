"""A project's configuration (seed 002): its checks, and how a request body is merged with it."""

from __future__ import annotations

from uuid import UUID

import pytest

from application.project_configs import apply_project_config
from domain.base import Actor, InvalidValueError
from domain.projectconfig import ProjectConfig

ACTOR = Actor(id="admin", ip=None)
UUID_ONE = UUID(int=1)
PROJECT = {"model": "llama-3.1-8b", "temperature": 0.7, "max_tokens": 64}


def test_without_overwrite_the_projects_settings_replace_the_requests():
    body = {"model": "gpt-4o", "temperature": 0.2, "messages": [], "max_completion_tokens": 900}

    merged = apply_project_config(False, PROJECT, body)

    # max_completion_tokens would override the project's max_tokens upstream: it goes.
    assert merged == {"model": "llama-3.1-8b", "temperature": 0.7, "messages": [], "max_tokens": 64}


def test_with_overwrite_the_requests_settings_win_and_the_projects_fill_gaps():
    body = {"model": "gpt-4o", "messages": [], "max_completion_tokens": 900}

    merged = apply_project_config(True, PROJECT, body)

    assert merged == {
        "model": "gpt-4o",
        "temperature": 0.7,
        "messages": [],
        "max_completion_tokens": 900,
    }


def test_a_project_without_settings_leaves_the_body_as_it_is():
    body = {"model": "gpt-4o", "messages": []}

    assert apply_project_config(False, {}, body) is body


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", 2.5),
        ("temperature", "0.7"),
        ("temperature", True),
        ("temperature", float("nan")),
        ("top_p", -0.1),
        ("max_tokens", 0),
        ("max_tokens", 1.5),
        ("model", "Not A Slug"),
        ("stop", ["x"]),
    ],
)
def test_a_setting_out_of_bounds_or_unknown_is_refused_naming_it(name, value):
    config = ProjectConfig.create(UUID_ONE, None, {}, ACTOR)

    with pytest.raises(InvalidValueError) as refused:
        config.update(None, {name: value}, ACTOR)

    assert refused.value.field == name


def test_a_change_that_changes_nothing_records_nothing():
    config = ProjectConfig.create(UUID_ONE, False, {"temperature": 0.5}, ACTOR)
    config.collect_events()

    config.update(False, {"temperature": 0.5, "top_p": None}, ACTOR)

    assert config.collect_events() == []

"""The McpServer aggregate: URL, transport and header rules, updates, deletion, replay."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.base import InvalidValueError
from domain.mcpserver import McpServer, McpServerDeletedError, check_headers
from tests.unit.support import an_actor, replay, through_store


def a_server(**overrides: object) -> McpServer:
    values: dict[str, object] = {
        "tenant_id": uuid4(),
        "name": "search tools",
        "url": "https://mcp.example.com/mcp",
        "transport": "streamable-http",
        "header_names": ["Authorization"],
        "headers_ciphertext": b"\x01sealed",
        "enabled": True,
        "actor": an_actor(),
    }
    values.update(overrides)
    return McpServer.register(**values)  # type: ignore[arg-type]


def test_a_server_keeps_what_it_was_registered_with():
    server = a_server(transport="sse", enabled=False)

    assert (server.name, server.url, server.transport) == (
        "search tools",
        "https://mcp.example.com/mcp",
        "sse",
    )
    assert server.header_names == ["Authorization"]
    assert server.enabled is False and server.deleted is False


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("url", "ftp://mcp.example.com"),
        ("url", "https://user:pw@mcp.example.com"),
        ("url", "http://[::1"),
        ("transport", "stdio"),
        ("name", ""),
        ("name", "x\x00"),
        ("enabled", 1),
    ],
)
def test_a_server_refuses_a_bad_field_naming_it(field, value):
    with pytest.raises(InvalidValueError) as e:
        a_server(**{field: value})
    assert e.value.field == field


@pytest.mark.parametrize(
    "headers",
    [
        {"Bad Name": "x"},
        {"X-Token": "a\r\nInjected: yes"},
        {"X-Token": "a\x00"},
        {"x-token": "a", "X-Token": "b"},
        {f"X-{i}": "v" for i in range(21)},
        ["Authorization"],
    ],
)
def test_headers_that_could_not_be_sent_safely_are_refused(headers):
    with pytest.raises(InvalidValueError):
        check_headers(headers)


def test_an_update_changes_only_what_differs_and_records_nothing_for_no_change():
    server = a_server()
    server.update(an_actor(), url="https://other.example.com/mcp", enabled=True)
    events = server.collect_events()

    assert [type(e).__name__ for e in events] == ["Registered", "Updated"]
    assert events[1].changes == {"url": "https://other.example.com/mcp"}
    server.update(an_actor(), name="search tools")
    assert server.collect_events() == []


def test_a_deleted_server_cannot_be_changed_and_replays_as_deleted():
    server = a_server()
    server.replace_headers([], None, an_actor())
    server.delete(an_actor())
    with pytest.raises(McpServerDeletedError):
        server.update(an_actor(), enabled=False)

    copy = replay(through_store(server.collect_events()))
    assert copy.deleted is True and copy.header_names == [] and copy.headers_ciphertext is None

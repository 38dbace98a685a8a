"""Principal: what the admin, a management key and a router key may touch."""

from __future__ import annotations

from uuid import uuid4

import pytest

from application.auth import Principal
from application.errors import ForbiddenError, NotFoundError
from domain.base import Actor, InvalidValueError

TENANT = uuid4()
OTHER_TENANT = uuid4()


def admin() -> Principal:
    return Principal(kind="admin", actor=Actor(id="admin", ip="192.0.2.1"))


def key_of(kind: str, tenant_id=TENANT) -> Principal:
    key_id = uuid4()
    return Principal(
        kind=kind,  # type: ignore[arg-type]
        actor=Actor(id=f"key:{key_id}", ip="192.0.2.2"),
        tenant_id=tenant_id,
        key_id=key_id,
    )


def test_only_the_admin_is_admin():
    assert admin().is_admin
    assert not key_of("management").is_admin
    assert not key_of("router").is_admin


def test_the_admin_sees_every_tenant():
    assert admin().tenant_filter() is None


@pytest.mark.parametrize("kind", ["management", "router"])
def test_a_key_sees_only_its_own_tenant(kind):
    assert key_of(kind).tenant_filter() == TENANT


@pytest.mark.parametrize("kind", ["admin", "management"])
def test_the_admin_and_a_management_key_may_use_management_routes(kind):
    principal = admin() if kind == "admin" else key_of(kind)

    principal.check_management()


def test_a_router_key_is_forbidden_on_management_routes():
    with pytest.raises(ForbiddenError):
        key_of("router").check_management()


def test_the_admin_passes_the_admin_check():
    admin().check_admin()


@pytest.mark.parametrize("kind", ["management", "router"])
def test_a_key_is_forbidden_where_only_the_admin_may_act(kind):
    with pytest.raises(ForbiddenError):
        key_of(kind).check_admin()


def test_the_admin_may_touch_any_tenants_resource():
    admin().check_tenant(OTHER_TENANT, "key", uuid4())


def test_a_key_may_touch_its_own_tenants_resource():
    key_of("management").check_tenant(TENANT, "key", uuid4())


def test_another_tenants_resource_is_not_found_for_a_key():
    ident = uuid4()

    with pytest.raises(NotFoundError) as not_found:
        key_of("management").check_tenant(OTHER_TENANT, "budget", ident)

    assert not_found.value.kind == "budget"
    assert str(ident) in str(not_found.value)


def test_the_admin_must_name_the_tenant_that_owns_a_new_resource():
    with pytest.raises(InvalidValueError) as refused:
        admin().owning_tenant(None)

    assert refused.value.field == "tenant_id"


def test_the_admin_creates_a_resource_for_the_tenant_it_names():
    assert admin().owning_tenant(OTHER_TENANT) == OTHER_TENANT


def test_a_key_creates_resources_for_its_own_tenant_when_none_is_named():
    assert key_of("management").owning_tenant(None) == TENANT


def test_a_key_may_name_its_own_tenant():
    assert key_of("management").owning_tenant(TENANT) == TENANT


def test_a_key_naming_another_tenant_gets_not_found():
    with pytest.raises(NotFoundError):
        key_of("management").owning_tenant(OTHER_TENANT)


def test_a_principal_is_immutable():
    principal = key_of("management")

    with pytest.raises(AttributeError):
        principal.tenant_id = OTHER_TENANT  # type: ignore[misc]

"""An Idempotency-Key never turns a request into a 500, whatever its body holds."""

from __future__ import annotations

import uuid

from tests.helpers import assert_error


def test_a_tenants_key_creating_a_tenant_with_a_huge_number_and_an_idempotency_key_gets_403(
    tenant,
):
    # Found by the schema fuzz: the request's fingerprint was taken with orjson, which refuses
    # integers beyond 64 bits, before the command could say that only the admin may do this.
    r = tenant.api.post(
        "/tenants",
        json={"name": "huge", "weight": 2**81},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )

    assert_error(r, 403)

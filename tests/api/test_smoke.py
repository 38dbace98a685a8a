"""The first path a new operator walks."""


def test_health_answers_ok_without_a_token(anonymous):
    r = anonymous.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_an_admin_creates_a_tenant_and_a_key_that_then_lists_its_own_tenant(admin, tenant):
    r = tenant.api.get("/tenants")
    assert r.status_code == 200
    assert [t["id"] for t in r.json()["data"]] == [tenant.id]

"""Users: sign-up and sign-in (``/auth/...``, seed 003), their JWTs on the management API and
the gateway, a tenant's users, removal and offboarding, and what is never stored in clear."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import openai
import orjson
import psycopg
import pytest
from freezegun import freeze_time

from tests.api.gateway_fixtures import *  # noqa: F403
from tests.api.gateway_fixtures import HELLO, Gateway
from tests.conftest import ADMIN_TOKEN, Api, LiveServer, make_settings
from tests.helpers import error_of

PASSWORD = "YourSecurePass123"
SEVEN_DAYS = 7 * 24 * 3600


def new_email() -> str:
    return f"you-{uuid.uuid4().hex[:12]}@Example.com"


def new_ip() -> str:
    """A client address of its own (uvicorn trusts X-Forwarded-For from the loopback)."""
    return f"198.51.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


class Auth:
    """``/auth/...`` of one server, from a client IP of its own."""

    def __init__(self, base_url: str, ip: str | None = None) -> None:
        headers = {"X-Forwarded-For": ip or new_ip()}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=30)
        self.base_url = base_url

    def register(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return self.http.post("/auth/register", json={"email": email, "password": password})

    def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        return self.http.post("/auth/login", json={"email": email, "password": password})

    def signed_up(self, email: str | None = None) -> tuple[dict[str, Any], Api]:
        r = self.register(email or new_email())
        assert r.status_code == 201, r.text
        return r.json(), Api(self.base_url, r.json()["token"])


@pytest.fixture
def auth(live_server) -> Auth:
    return Auth(live_server.url)


def sign_in(auth: Auth, email: str, password: str = PASSWORD) -> Api:
    r = auth.login(email, password)
    assert r.status_code == 200, r.text
    return Api(auth.base_url, r.json()["token"])


# -- sign-up and sign-in ------------------------------------------------------------------


def test_registering_answers_the_user_and_a_token_valid_seven_days(auth):
    email = new_email()

    r = auth.register(email)

    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user"]["email"] == email
    assert uuid.UUID(body["user"]["id"])
    assert body["expires_in"] == 604800
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == body["user"]["id"]
    assert claims["exp"] - claims["iat"] == SEVEN_DAYS


def test_sign_up_creates_a_tenant_that_the_user_manages(auth):
    body, api = auth.signed_up()

    tenants = api.get("/tenants").json()["data"]
    users = api.get("/users").json()["data"]
    key = api.post(f"/tenants/{body['user']['tenant_id']}/keys", json={"name": "mine"})

    assert [t["id"] for t in tenants] == [body["user"]["tenant_id"]]
    assert [(u["id"], u["email"]) for u in users] == [(body["user"]["id"], body["user"]["email"])]
    assert key.status_code == 201, key.text


def test_an_email_registered_already_is_a_409_whatever_its_case(auth):
    email = new_email()
    auth.signed_up(email)

    r = auth.register(email.upper())

    assert error_of(r, 409)["message"] == "this email is already registered"


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("Short1!", "too short"),
        ("password123", "most common"),
        ("aaaaaaaaaaaa", "different characters"),
        ("x" * 300, "body"),  # beyond the schema's bound: refused before any hashing
    ],
)
def test_a_weak_password_is_a_400_that_says_why(auth, password, why):
    r = auth.register(new_email(), password)

    error = error_of(r, 400)
    assert error["param"] == "password"
    if why != "body":
        assert why in error["message"]


def test_a_password_containing_the_emails_name_is_refused(auth):
    r = auth.register("margaret.h@example.com", "margaret.h-2026")

    assert "email" in error_of(r, 400)["message"]


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "sp ace@x.io", ""])
def test_a_malformed_email_is_a_400(auth, email):
    assert error_of(auth.register(email), 400)["param"] == "email"


def test_signing_in_answers_a_fresh_token_in_the_same_shape(auth):
    email = new_email()
    registered, _ = auth.signed_up(email)

    r = auth.login(email.lower())

    assert r.status_code == 200, r.text
    body = r.json()
    assert body.keys() == registered.keys()
    assert body["user"] == registered["user"]
    assert body["expires_in"] == 604800
    assert Api(auth.base_url, body["token"]).get("/users").status_code == 200


def test_a_wrong_password_and_an_unknown_email_get_the_same_401(auth):
    email = new_email()
    auth.signed_up(email)

    wrong_password = auth.login(email, PASSWORD + "x")
    unknown_email = auth.login(new_email())

    a, b = error_of(wrong_password, 401), error_of(unknown_email, 401)
    assert a == b
    assert a["message"] == "invalid email or password"
    assert a["code"] == "invalid_credentials"


# -- tokens on the management API ----------------------------------------------------------


def test_a_users_token_sees_only_its_own_tenant(auth, tenant):
    _, api = auth.signed_up()

    assert error_of(api.get(f"/tenants/{tenant.id}"), 404)
    assert error_of(api.get(f"/keys/{tenant.key['id']}"), 404)
    assert tenant.id not in api.get("/keys").text
    assert error_of(
        api.post(f"/tenants/{tenant.id}/users", json={"email": new_email(), "password": PASSWORD}),
        404,
    )


def test_a_users_token_may_not_do_what_only_the_operator_may(auth):
    _, api = auth.signed_up()

    assert error_of(api.post("/tenants", json={"name": f"t-{uuid.uuid4().hex[:8]}"}), 403)


@pytest.mark.parametrize(
    "token",
    [
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",  # made up
        jwt.encode(
            {
                "iss": "hostplane",
                "sub": str(uuid.uuid4()),
                "tid": str(uuid.uuid4()),
                "exp": 4_000_000_000,
            },
            "another secret, long enough to sign with",
            algorithm="HS256",
        ),
        jwt.encode({"sub": "x"}, None, algorithm="none"),
    ],
    ids=["garbage", "another-secret", "unsigned"],
)
def test_a_forged_token_is_a_401(live_server, token):
    r = Api(live_server.url, token).get("/users")

    assert error_of(r, 401)["type"] == "authentication_error"


def test_a_token_is_refused_once_its_seven_days_are_over(auth, container):
    email = new_email()
    auth.signed_up(email)
    now = datetime.now(UTC)
    issued = {}
    for name, age in (
        ("fresh", timedelta(days=7) - timedelta(minutes=1)),
        ("expired", timedelta(days=7) + timedelta(seconds=1)),
    ):
        with freeze_time(now - age):
            issued[name] = container.users.login(email, PASSWORD).token

    assert Api(auth.base_url, issued["fresh"]).get("/users").status_code == 200
    error = error_of(Api(auth.base_url, issued["expired"]).get("/users"), 401)
    assert "expired" in error["message"]


def test_a_tampered_token_is_refused(auth):
    body, _ = auth.signed_up()
    header, payload, signature = body["token"].split(".")
    claims = orjson.loads(jwt.utils.base64url_decode(payload))
    claims["tid"] = str(uuid.uuid4())
    forged = ".".join(
        [header, jwt.utils.base64url_encode(orjson.dumps(claims)).decode(), signature]
    )

    assert error_of(Api(auth.base_url, forged).get("/users"), 401)


# -- a tenant's users ----------------------------------------------------------------------


def test_the_admin_adds_a_user_to_a_tenant_who_then_signs_in(admin, tenant, auth):
    email = new_email()

    r = admin.post(f"/tenants/{tenant.id}/users", json={"email": email, "password": PASSWORD})

    assert r.status_code == 201, r.text
    user = r.json()
    assert user["email"] == email and user["tenant_id"] == tenant.id
    api = sign_in(auth, email)
    assert [k["id"] for k in api.get("/keys").json()["data"]] == [tenant.key["id"]]
    assert admin.get(f"/users/{user['id']}").json() == user


def test_a_tenants_management_key_adds_and_lists_its_users(tenant, other_tenant):
    emails = [new_email(), new_email()]
    for email in emails:
        r = tenant.api.post(
            f"/tenants/{tenant.id}/users", json={"email": email, "password": PASSWORD}
        )
        assert r.status_code == 201, r.text

    listed = tenant.api.get("/users").json()["data"]
    foreign = other_tenant.api.get("/users").json()["data"]

    assert [u["email"] for u in listed] == emails[::-1]  # newest first
    assert not any(u["tenant_id"] == tenant.id for u in foreign)
    assert other_tenant.api.get("/users", params={"tenant_id": tenant.id}).json()["data"] == []


def test_a_user_adds_a_user_to_its_own_tenant(auth):
    body, api = auth.signed_up()
    email = new_email()

    r = api.post(
        f"/tenants/{body['user']['tenant_id']}/users", json={"email": email, "password": PASSWORD}
    )

    assert r.status_code == 201, r.text
    assert sign_in(auth, email).get("/users").json()["data"][0]["email"] == email


def test_a_removed_users_unexpired_token_is_refused_and_its_email_is_free_again(admin, auth):
    email = new_email()
    body, api = auth.signed_up(email)
    assert api.get("/users").status_code == 200

    r = admin.delete(f"/users/{body['user']['id']}")

    assert r.status_code == 200, r.text
    assert "removed" in error_of(api.get("/users"), 401)["message"]
    assert error_of(auth.login(email), 401)
    assert error_of(admin.get(f"/users/{body['user']['id']}"), 404)
    assert auth.register(email).status_code == 201


def test_a_user_cant_remove_itself(auth):
    body, api = auth.signed_up()

    assert error_of(api.delete(f"/users/{body['user']['id']}"), 403)


def test_a_user_of_an_offboarded_tenant_is_refused_with_an_unexpired_token(admin, auth):
    email = new_email()
    body, api = auth.signed_up(email)
    assert api.get("/users").status_code == 200

    r = admin.delete(f"/tenants/{body['user']['tenant_id']}")

    assert r.status_code == 200, r.text
    assert error_of(api.get("/users"), 401)
    assert error_of(auth.login(email), 401)
    assert auth.register(email).status_code == 201  # a new account, in a tenant of its own


def test_signing_up_and_removing_are_audited_without_the_email_or_password(admin, auth):
    email = new_email()
    body, _ = auth.signed_up(email)
    user_id, tenant_id = body["user"]["id"], body["user"]["tenant_id"]
    admin.delete(f"/users/{user_id}")

    r = admin.get("/audit", params={"target_id": user_id})

    entries = r.json()["data"]
    assert {e["action"] for e in entries} == {"user.registered", "user.removed"}
    registered = next(e for e in entries if e["action"] == "user.registered")
    assert registered["actor"] == f"user:{user_id}"
    assert registered["tenant_id"] == tenant_id
    assert registered["changes"]["password_hash"] == "[redacted]"
    assert email.lower() not in r.text.lower() and PASSWORD not in r.text


def test_the_email_and_password_are_in_no_stored_event_and_no_export(admin, auth, container):
    email = new_email()
    body, _ = auth.signed_up(email)
    tenant_id = body["user"]["tenant_id"]
    sign_in(auth, email)

    export = admin.get(f"/tenants/{tenant_id}/export")
    with psycopg.connect(container.settings.database_url) as conn:
        found = conn.execute(
            "SELECT count(*) FROM hostplane_events WHERE position(%s in lower(convert_from("
            "state, 'UTF8'))) > 0 OR position(%s in convert_from(state, 'UTF8')) > 0",
            (email.lower(), PASSWORD),
        ).fetchone()[0]

    assert export.status_code == 200, export.text
    assert '"user.registered"' in export.text
    assert email.lower() not in export.text.lower() and PASSWORD not in export.text
    assert found == 0


# -- on the gateway, with the openai SDK ---------------------------------------------------


@pytest.fixture(scope="module")
def gateway_overrides() -> dict[str, Any]:
    # Small sign-in limits, for the tests of them; every other test signs in from an IP of its
    # own. A small pool: this module's servers share one PostgreSQL with the session's.
    return {"login_per_email_per_minute": 3, "login_per_ip_per_minute": 5, "pool_size": 3}


def test_a_users_token_calls_the_gateway_for_its_tenant_with_any_model(gateway: Gateway):
    auth = Auth(gateway.url)
    body, _ = auth.signed_up()
    tenant_id = body["user"]["tenant_id"]
    r = gateway.admin.post(
        "/byok",
        json={
            "tenant_id": tenant_id,
            "name": "openai",
            "upstream": "openai",
            "external_key": "sk-" + "k" * 40,
        },
    )
    assert r.status_code == 201, r.text
    model = gateway.model("openai")
    client = gateway.client(body["token"])

    answer = client.chat.completions.create(model=model, messages=HELLO)

    assert answer.choices[0].message.content
    assert model in [m.id for m in client.models.list()]
    assert gateway.wait_billed(tenant_id, 1)["requests"] >= 1
    records = gateway.records(tenant_id)
    assert [r["key_id"] for rs in records.values() for r in rs] == [body["user"]["id"]]


def test_a_removed_users_token_is_refused_by_the_gateway(gateway: Gateway):
    auth = Auth(gateway.url)
    body, _ = auth.signed_up()
    model = gateway.model("openai")
    client = gateway.client(body["token"])
    with pytest.raises(openai.APIStatusError) as before:  # no upstream yet: not a 401
        client.chat.completions.create(model=model, messages=HELLO)
    assert before.value.status_code != 401

    assert gateway.admin.delete(f"/users/{body['user']['id']}").status_code == 200

    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=model, messages=HELLO)


def in_one_minute() -> None:
    """Start a run of requests early enough in a minute that the limit's window holds them."""
    second = datetime.now(UTC).second
    if second > 45:
        time.sleep(60 - second + 0.1)


def test_sign_in_attempts_are_limited_per_email(gateway: Gateway):
    email = new_email()
    Auth(gateway.url).signed_up(email)
    in_one_minute()

    answers = [Auth(gateway.url).login(email, "wrong password!") for _ in range(3)]
    limited = Auth(gateway.url).login(email)  # the right password, from yet another IP

    assert [r.status_code for r in answers] == [401, 401, 401]
    assert error_of(limited, 429)["type"] == "rate_limit_error"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert Auth(gateway.url).login(new_email()).status_code == 401  # other emails: not limited


def test_sign_in_attempts_are_limited_per_ip(gateway: Gateway):
    same_ip = Auth(gateway.url)
    in_one_minute()

    answers = [same_ip.login(new_email()) for _ in range(5)]
    limited = same_ip.login(new_email())

    assert [r.status_code for r in answers] == [401] * 5
    assert error_of(limited, 429)
    assert "Retry-After" in limited.headers
    assert Auth(gateway.url).login(new_email()).status_code == 401  # another IP: not limited


# -- sign-up closed ------------------------------------------------------------------------


def test_with_sign_up_closed_only_the_operator_or_a_tenant_adds_users(database_conninfo, tmp_path):
    container = __import__("interfaces.bootstrap", fromlist=["Container"]).Container.open(
        make_settings(database_conninfo, tmp_path, signup="closed", pool_size=2)
    )
    server = LiveServer(container).start()
    try:
        auth = Auth(server.url)
        admin = Api(server.url, ADMIN_TOKEN)
        tenant = admin.new_tenant()
        email = new_email()

        refused = auth.register(email)
        added = admin.post(
            f"/tenants/{tenant['id']}/users", json={"email": email, "password": PASSWORD}
        )

        assert error_of(refused, 403)["message"].startswith("sign-up is closed")
        assert added.status_code == 201, added.text
        assert auth.login(email).status_code == 200
    finally:
        server.stop()
        container.close()

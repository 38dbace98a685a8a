"""Sign-in secrets: argon2 password hashes (argon2-cffi) and users' JWTs (PyJWT, HS256).

The JWT signing secret is kept like the master key: ``HOSTPLANE_JWT_SECRET``, or else derived
from the master key (so every node that shares the master key shares it); the first node to
start on a database records a check value of it in ``hostplane_meta`` (an HMAC, never the
secret), and a node signing with another secret refuses to start.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from uuid import UUID

import argon2
import jwt
import psycopg

from application.errors import AuthenticationError
from application.ports import UserClaims
from interfaces.crypto import META, META_LOCK, MasterKeyError, derived_key

TOKEN_LIFETIME = timedelta(days=7)
ISSUER = "hostplane"
ALGORITHM = "HS256"
MIN_SECRET = 32  # characters of HOSTPLANE_JWT_SECRET
CHECK_INPUT = b"hostplane jwt secret check v1"
SELECT_CHECK = "SELECT value FROM hostplane_meta WHERE name = 'jwt_secret_check'"
INSERT_CHECK = "INSERT INTO hostplane_meta (name, value) VALUES ('jwt_secret_check', %s)"


class Argon2Passwords:
    """Implements the ``Passwords`` port with argon2id at argon2-cffi's default parameters
    (RFC 9106's low-memory profile: 3 passes over 64 MiB)."""

    def __init__(self, hasher: argon2.PasswordHasher | None = None) -> None:
        self.hasher = hasher or argon2.PasswordHasher()

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self.hasher.verify(password_hash, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self.hasher.check_needs_rehash(password_hash)


class JwtTokens:
    """Implements the ``UserTokens`` port: HS256 JWTs valid 7 days."""

    lifetime_seconds = int(TOKEN_LIFETIME.total_seconds())

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def issue(self, user_id: UUID, tenant_id: UUID, now: datetime) -> str:
        claims = {
            "iss": ISSUER,
            "sub": str(user_id),
            "tid": str(tenant_id),
            "iat": int(now.timestamp()),
            "exp": int((now + TOKEN_LIFETIME).timestamp()),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def is_token(self, token: str) -> bool:
        # A JWS in compact form: base64url of a JSON header ("{" encodes as "ey"), two dots.
        return token.startswith("eyJ") and token.count(".") == 2

    def read(self, token: str, now: datetime) -> UserClaims:
        try:
            # The clock is ours (tests pin it): PyJWT checks "exp" against the ``now`` given
            # by turning its own check off and doing it here.
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "sub", "tid", "iss"], "verify_exp": False},
            )
            expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
            user_id, tenant_id = UUID(str(claims["sub"])), UUID(str(claims["tid"]))
        except (jwt.InvalidTokenError, ValueError, TypeError, OverflowError):
            raise AuthenticationError("invalid token") from None
        if now >= expires_at:
            raise AuthenticationError("this token has expired: sign in again")
        return UserClaims(user_id=user_id, tenant_id=tenant_id, expires_at=expires_at)


def jwt_secret(configured: str | None, master_key: bytes) -> bytes:
    """``HOSTPLANE_JWT_SECRET``, else a key derived from the master key."""
    if configured is None:
        return derived_key(master_key, b"hostplane jwt signing v1")
    if len(configured) < MIN_SECRET:
        raise MasterKeyError(f"HOSTPLANE_JWT_SECRET must be at least {MIN_SECRET} characters")
    return configured.encode()


def checked_jwt_secret(conninfo: str, configured: str | None, master_key: bytes) -> bytes:
    """The JWT signing secret, checked against the one the database's first node used: a node
    with another would refuse every token the others issue."""
    secret = jwt_secret(configured, master_key)
    check = hmac.new(secret, CHECK_INPUT, hashlib.sha256).hexdigest()
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        conn.execute(META_LOCK)
        conn.execute(META)
        row = conn.execute(SELECT_CHECK).fetchone()
        if row is None:
            conn.execute(INSERT_CHECK, (check,))
        elif not hmac.compare_digest(str(row[0]), check):
            source = (
                "HOSTPLANE_JWT_SECRET" if configured else "the JWT secret (from the master key)"
            )
            raise MasterKeyError(
                f"{source} is not the JWT secret this database was initialised with: give every"
                " node the same HOSTPLANE_JWT_SECRET (or none, on every node)"
            )
    return secret

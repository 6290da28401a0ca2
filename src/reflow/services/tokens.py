"""User tokens: the JWT the embedded UI is rendered with (Alloy U7), and the keys that verify it.

The signing key is derived from REFLOW_SECRET_KEY rather than configured: every process of
a deployment has the same REFLOW_SECRET_KEY, so every process signs with the same Ed25519
key and nothing new has to be shared. Each Fernet key of the list (newest first) gives one
key pair: the newest signs, and all of them are published in the JWKS, so a token signed
before a rotation stays verifiable while its old key is kept in the list (docs/tokens.md).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

import jwt
import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from reflow.clock import Clock, SystemClock
from reflow.domain.records import Team
from reflow.errors import ReflowError
from reflow.services.users import UserService
from reflow.settings import Settings

ISSUER = "reflow"
ALGORITHM = "EdDSA"
# Changing this changes every derived key (and so every kid): it names what the key is for,
# so the same secret never yields the same bytes for two purposes.
_HKDF_INFO = b"reflow user token signing key"
_KID_CHARS = 16


class TokensUnavailable(ReflowError):
    """No REFLOW_SECRET_KEY, so there is no key to sign user tokens with."""

    status = 503


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One Ed25519 key pair derived from one Fernet key, and its public JWK."""

    private: Ed25519PrivateKey
    kid: str
    jwk: dict[str, str]


def derive_signing_key(fernet_key: str) -> SigningKey:
    """The Ed25519 key of one Fernet key (URL-safe base64 of 32 bytes): HKDF-SHA256 of its
    bytes with info ``reflow user token signing key``, used as the private key's seed."""
    secret = base64.urlsafe_b64decode(fernet_key.strip().encode())
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(secret)
    private = Ed25519PrivateKey.from_private_bytes(seed)
    x = _b64url(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    # kid: the start of the key's RFC 7638 thumbprint (SHA-256 of its required members).
    thumbprint = hashlib.sha256(
        orjson.dumps({"crv": "Ed25519", "kty": "OKP", "x": x})
    ).digest()
    kid = _b64url(thumbprint)[:_KID_CHARS]
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALGORITHM, "use": "sig"}
    return SigningKey(private, kid, jwk)


def signing_keys(secret_key: str | None) -> list[SigningKey]:
    """The keys of a REFLOW_SECRET_KEY value (comma-separated, newest first); none without."""
    if secret_key is None:
        return []
    return [derive_signing_key(part) for part in secret_key.split(",") if part.strip()]


class TokenService:
    """Issue user tokens and publish the keys that verify them."""

    def __init__(self, users: UserService, secret_key: str | None, ttl: float,
                 clock: Clock | None = None) -> None:
        self.users = users
        self.keys = signing_keys(secret_key)
        self.ttl = ttl
        self.clock: Clock = clock or SystemClock()

    @classmethod
    def from_settings(cls, users: UserService, settings: Settings,
                      clock: Clock | None = None) -> TokenService:
        """Keys from REFLOW_SECRET_KEY (or dev's key file), lifetime from
        REFLOW_USER_TOKEN_TTL."""
        return cls(users, settings.secret_key_text(), settings.user_token_ttl, clock)

    def jwks(self) -> list[dict[str, str]]:
        """The public keys, newest (the signing one) first: ``/.well-known/jwks.json``."""
        return [dict(key.jwk) for key in self.keys]

    async def issue(self, team: Team, id_or_username: str) -> str:
        """A signed token for the user (by id or username): NotFound for an unknown user,
        TokensUnavailable without REFLOW_SECRET_KEY."""
        if not self.keys:
            raise TokensUnavailable("user tokens need REFLOW_SECRET_KEY")
        user = await self.users.get(team, id_or_username)
        issued = self.clock.now_ms() // 1000
        claims = {
            "iss": ISSUER,
            "sub": user.id,
            "team": team.id,
            "username": user.username,
            "iat": issued,
            "exp": issued + int(self.ttl),
            "jti": secrets.token_urlsafe(16),
        }
        key = self.keys[0]
        return jwt.encode(claims, key.private, algorithm=ALGORITHM, headers={"kid": key.kid})

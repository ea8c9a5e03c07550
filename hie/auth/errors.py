"""OAuth 2.0 errors (RFC 6749 §5.2) as the token endpoint reports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(eq=False)
class OAuthError(Exception):
    """``error`` is one of RFC 6749's codes; ``description`` says what was wrong."""

    error: str
    description: str

    def __post_init__(self) -> None:
        super().__init__(f"{self.error}: {self.description}")

    @property
    def status(self) -> int:
        # A failed client authentication is 401; every other refusal is a bad request.
        return 401 if self.error == "invalid_client" else 400

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description)


def invalid_scope(description: str) -> OAuthError:
    return OAuthError("invalid_scope", description)


def unsupported_grant_type(description: str) -> OAuthError:
    return OAuthError("unsupported_grant_type", description)

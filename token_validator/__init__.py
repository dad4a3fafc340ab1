"""A resource server's token check against the token service: introspection with a local
cache that follows the revocation feed and the answers' cache hints (docs/resource-servers.md).
Usable on its own: it needs grpcio and the generated `tokenservice` stubs, nothing of the
service itself."""

from token_validator.validator import TokenValidator

__all__ = ["TokenValidator"]

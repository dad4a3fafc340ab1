"""Scopes with a meaning to the token service itself."""

from __future__ import annotations

# Provisioning of the client's own tenant through the AdminService.
ADMIN_SCOPE = "tokenservice.admin"
# Every tenant: provisioning, signing keys, and introspecting any tenant's tokens.
PLATFORM_ADMIN_SCOPE = "tokenservice.platform_admin"

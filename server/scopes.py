"""Scopes with a meaning to the token service itself."""

from __future__ import annotations

# Provisioning of the client's own tenant through the AdminService.
ADMIN_SCOPE = "tokenservice.admin"
# Every tenant: provisioning, signing keys, and introspecting any tenant's tokens.
PLATFORM_ADMIN_SCOPE = "tokenservice.platform_admin"

# What the RFC 8414 metadata's scopes_supported lists: the scopes whose meaning the service
# itself defines. Every other scope is whatever a tenant's administrator gives a client
# (`tokenservice admin client create --scopes ...`): per tenant, open-ended, and no other
# tenant's business, so the process-wide, publicly cached metadata does not enumerate them
# (RFC 8414 section 2 lets a server leave supported values out). Nor does it list
# `tenant={tenant}`, which every token carries for its own tenant unasked.
PUBLISHED_SCOPES = (ADMIN_SCOPE, PLATFORM_ADMIN_SCOPE)

"""Creates the database and two client_credentials applications, one whose secret is stored in
plain text (hash_client_secret=False) and one with DOT's default hashed secret (Django's
password hasher, PBKDF2), and prints their ids and secrets as JSON for the load generator.

    DOT_BENCH_DB=... python -m dot_bench.provision
"""

import json
import os
import secrets

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dot_bench.settings")
django.setup()

from django.core.management import call_command  # noqa: E402
from oauth2_provider.models import Application  # noqa: E402


def application(name: str, hashed: bool) -> dict[str, str]:
    secret = secrets.token_urlsafe(32)
    app = Application.objects.create(
        name=name,
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        hash_client_secret=hashed,
    )
    return {"client_id": app.client_id, "client_secret": secret}


call_command("migrate", verbosity=0, interactive=False)
print(json.dumps({"plain": application("plain", False), "hashed": application("hashed", True)}))

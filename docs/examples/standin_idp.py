"""A stand-in OpenID provider for the walkthroughs (README.md, docs/walkthrough.md): one RSA key
and its JWKS on ISSUER's port, and one token it signed for EMAIL, printed once it listens.

    python docs/examples/standin_idp.py ISSUER EMAIL      (ISSUER: http://127.0.0.1:PORT)

Not a provider to deploy: it stands in for Keycloak, Auth0 or Entra ID so that a token exchange
can be tried on one machine.
"""

from __future__ import annotations

import http.server
import json
import sys
import time

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

KID = "idp-key-1"


def main(issuer: str, email: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = json.dumps({"keys": [{**jwk, "kid": KID, "alg": "RS256", "use": "sig"}]}).encode()

    class Jwks(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, format: str, *args: object) -> None:  # quiet: no request log
            pass

    server = http.server.HTTPServer(("127.0.0.1", int(issuer.rsplit(":", 1)[1])), Jwks)
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": "storefront",
        "sub": "idp-user-1",
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + 300,
    }
    print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": KID}), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Identity providers for the tests: keys generated here (never moto's fixed one), JWKS documents
served by a real HTTP server on loopback that counts its requests, and tokens signed as an
issuer would sign them."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        encoder = {"RS": RSAAlgorithm, "PS": RSAAlgorithm, "ES": ECAlgorithm, "Ed": OKPAlgorithm}[self.algorithm[:2]]
        jwk = json.loads(encoder.to_jwk(public))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": self.algorithm}


def new_key(algorithm: str = "RS256", kid: str | None = None) -> SigningKey:
    if algorithm.startswith(("RS", "PS")):
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    else:
        private = ed25519.Ed25519PrivateKey.generate()
    return SigningKey(kid or uuid.uuid4().hex[:8], algorithm, private)


@dataclass
class Provider:
    """One issuer: its `iss`, the keys it publishes at /<name>/jwks.json, and its tokens."""

    name: str
    issuer: str
    keys: list[SigningKey] = field(default_factory=list)

    def token(self, key: SigningKey | None = None, expires_in: float | None = 3600, headers: dict[str, Any] | None = None,
              **claims: Any) -> str:
        key = key or self.keys[0]
        exp = None if expires_in is None else int(time.time() + expires_in)
        payload = {"iss": self.issuer, "sub": "alice", "exp": exp, **claims}
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(payload, key.private, algorithm=key.algorithm, headers={"kid": key.kid, **(headers or {})})


class JwksServer:
    """A real HTTP server on loopback serving each provider's JWKS, counting requests per path;
    `down = True` makes it answer 503."""

    def __init__(self) -> None:
        self.providers: dict[str, Provider] = {}
        self.requests: dict[str, int] = {}
        self.down = False
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.requests[self.path] = outer.requests.get(self.path, 0) + 1
                name = self.path.strip("/").split("/")[0]
                if outer.down or name not in outer.providers:
                    self.send_response(503 if outer.down else 404)
                    self.end_headers()
                    return
                body = json.dumps({"keys": [key.public_jwk() for key in outer.providers[name].keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, name: str, *algorithms: str, kid: str | None = None) -> Provider:
        provider = Provider(name, f"https://{name}.example.com/", [new_key(a, kid) for a in algorithms or ("RS256",)])
        self.providers[name] = provider
        return provider

    def jwks_uri(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}/jwks.json"

    def fetches(self, name: str) -> int:
        return self.requests.get(f"/{name}/jwks.json", 0)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

"""Loopback fakes of the Microsoft services a Teams bot talks to, each a real HTTP server on 127.0.0.1, port 0.

- `FakeBotFrameworkKeys`: the Bot Framework OpenID metadata and JWKS, with our own RSA keys, plus `mint()` to sign
  channel tokens with any claim, key id or key tweak (for inbound-auth tests).
- `FakeLogin`: the Microsoft identity platform token endpoint msal uses (over TLS: msal accepts only https).
- `FakeConnector`: a Bot Connector (`serviceUrl`) that records what the bot sends and checks every request against
  the Bot Connector swagger (path and method exist, body valid, Bearer token one `FakeLogin` issued for the Bot
  Connector scope). Anything wrong is appended to `violations`, which the fixtures turn into a test failure.
- `FakeGraph`: Microsoft Graph channel creation and paged team/channel member lists, with the same checks.

Both API fakes can be scripted to fail (`fail_next(429, retry_after=...)`). Response bodies follow the recorded
Teams traffic in `tests/reference/` (found with `tests.reference.reference_path`).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import re
import secrets
import selectors
import socket
import ssl
import tempfile
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jsonschema
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

from tests.reference import reference_path

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
BOT_CONNECTOR_SCOPE = "https://api.botframework.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


# -- plumbing: a loopback HTTP(S) server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeRequest:
    """One request as the fake saw it. `path` keeps its percent-encoding, as on the wire."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode()).items()}

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        return value[7:] if value.startswith("Bearer ") else None


@dataclass(frozen=True)
class FakeResponse:
    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


def error_body(code: str, message: str) -> dict[str, Any]:
    """The Bot Framework / Graph error envelope, as in the recorded `*_fails.yaml` cassettes."""
    return {"error": {"code": code, "message": message}}


class LoopbackServer:
    """A `ThreadingHTTPServer` on 127.0.0.1 and a free port, serving `app` from a daemon thread until `close()`."""

    def __init__(self, app: Callable[[FakeRequest], FakeResponse], *, tls: ssl.SSLContext | None = None) -> None:
        self.errors: list[str] = []
        handler = self._handler_class(app, self.errors)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        host, port = self._server.server_address[:2]
        self.base_url = f"{'https' if tls else 'http'}://{host!s}:{port}"
        # Our own accept loop with a wake-up socket: `serve_forever` polls, so stopping it costs up to 0.5 s.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, name="fake-teams", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._server, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_reader:
                        return
                    self._server.handle_request()

    def close(self) -> None:
        self._wake_writer.send(b"x")
        self._thread.join(timeout=5)
        self._server.server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    @staticmethod
    def _handler_class(app: Callable[[FakeRequest], FakeResponse], errors: list[str]) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = FakeRequest(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                try:
                    response = app(request)
                except Exception as exc:  # a bug in the fake must fail the test, not hang the client
                    errors.append(f"{request.method} {request.path}: {type(exc).__name__}: {exc}")
                    response = FakeResponse(500, error_body("FakeCrashed", "the fake raised"))
                payload = b"" if response.body is None else json.dumps(response.body).encode()
                self.send_response(response.status)
                if payload:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: pytest shows failures; request logs would only add noise."""

        return Handler


@dataclass(frozen=True)
class TlsMaterial:
    """A throw-away CA and a server certificate for 127.0.0.1, made with `cryptography`."""

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
            cert.write_bytes(self.cert_pem)
            key.write_bytes(self.key_pem)
            context.load_cert_chain(cert, key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Trusts the throw-away CA only (pass as `httpx.Client(verify=...)`)."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())


def make_tls_material() -> TlsMaterial:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "copbot test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


@dataclass
class _Fault:
    status: int
    retry_after: str | None
    code: str
    method: str | None
    path_contains: str | None


class FaultScript:
    """Scripted failures: the next matching requests get an error instead of being served."""

    def __init__(self) -> None:
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        code: str | None = None,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Make the next `times` matching requests fail with `status` (and `Retry-After` when given)."""
        header = f"{retry_after:g}" if isinstance(retry_after, float | int) else retry_after
        with self._lock:
            for _ in range(times):
                self._faults.append(
                    _Fault(
                        status=status,
                        retry_after=header,
                        code=code or _default_code(status),
                        method=method,
                        path_contains=path_contains,
                    )
                )

    @property
    def pending(self) -> int:
        return len(self._faults)

    def take(self, request: FakeRequest) -> FakeResponse | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.method not in (None, request.method):
                    continue
                if fault.path_contains is not None and fault.path_contains not in unquote(request.path):
                    continue
                del self._faults[i]
                headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
                return FakeResponse(fault.status, error_body(fault.code, "scripted fault"), headers)
        return None


def _default_code(status: int) -> str:
    return {412: "PreconditionFailed", 429: "TooManyRequests", 502: "BadGateway", 504: "GatewayTimeout"}.get(
        status, "ServiceError"
    )


# -- recorded payloads ---------------------------------------------------------------------------------------------


def load_recording(name: str) -> dict[str, Any]:
    """One file of `teams-botbuilder-js-recordings/` (a request or reply recording)."""
    data: dict[str, Any] = json.loads(reference_path("teams-botbuilder-js-recordings", name).read_text())
    return data


def recorded_activity(name: str = "20191021205338231-request-integrationBot.json", **changes: Any) -> dict[str, Any]:
    """The body of a recorded inbound Teams request (default: a personal-chat message), with `changes` applied."""
    activity = dict(load_recording(name)["body"])
    activity.update(changes)
    return activity


@cache
def recorded_members() -> tuple[dict[str, Any], ...]:
    """The members list of a recorded `GET /v3/conversations/{id}/members` reply (real Teams shape)."""
    response = load_recording("20191020025611549-reply-integrationBot.json")["response"]
    return tuple(dict(m) for m in response)


def recorded_connector_error(cassette: str) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of the first response in a `botframework-connector-recordings` cassette."""
    import yaml

    data = yaml.safe_load(reference_path("botframework-connector-recordings", cassette).read_text())
    response = data["interactions"][0]["response"]
    return int(response["status"]["code"]), json.loads(response["body"]["string"])


def synthetic_members(count: int, *, tenant_id: str) -> list[dict[str, Any]]:
    """`count` members shaped like the recorded ones (recorded first, then made-up ones), for paging tests."""
    # The recording's sign-in names were redacted to one address; real people each have their own.
    members = [
        dict(m, tenantId=tenant_id, email=f"member{i}@example.org", userPrincipalName=f"member{i}@example.org")
        for i, m in enumerate(recorded_members())
    ][:count]
    for i in range(len(members), count):
        object_id = str(uuid.UUID(int=0x9000 + i))
        members.append(
            {
                "id": "29:1" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("="),
                "objectId": object_id,
                "name": f"Test Member {i}",
                "givenName": "Test",
                "surname": f"Member {i}",
                "email": f"member{i}@example.org",
                "userPrincipalName": f"member{i}@example.org",
                "tenantId": tenant_id,
            }
        )
    return members


# -- Bot Framework OpenID metadata, JWKS and channel tokens ----------------------------------------------------------


@dataclass(frozen=True)
class SigningKey:
    """An RSA key the fake channel signs with; `endorsements` are published with it when not None."""

    kid: str
    private_key: rsa.RSAPrivateKey = field(repr=False)
    endorsements: tuple[str, ...] | None = ("msteams",)

    @classmethod
    def generate(cls, kid: str | None = None, *, endorsements: tuple[str, ...] | None = ("msteams",)) -> SigningKey:
        return cls(
            kid=kid or secrets.token_urlsafe(12),
            private_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
            endorsements=endorsements,
        )

    def jwk(self) -> dict[str, Any]:
        data: dict[str, Any] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        data.update({"kid": self.kid, "use": "sig"})
        if self.endorsements is not None:
            data["endorsements"] = list(self.endorsements)
        return data


class FakeBotFrameworkKeys:
    """`/v1/.well-known/openidconfiguration` and its `jwks_uri`, like login.botframework.com; mints tokens."""

    def __init__(self, *, app_id: str, keys: list[SigningKey]) -> None:
        self.app_id = app_id
        self.published: dict[str, SigningKey] = {k.kid: k for k in keys}
        self.hits: Counter[str] = Counter()
        self.unavailable = False
        self._server = LoopbackServer(self._app)
        self.metadata_url = f"{self._server.base_url}/v1/.well-known/openidconfiguration"
        self.jwks_url = f"{self._server.base_url}/v1/.well-known/keys"

    @property
    def errors(self) -> list[str]:
        return self._server.errors

    @property
    def default_key(self) -> SigningKey:
        return next(iter(self.published.values()))

    def publish(self, key: SigningKey) -> None:
        self.published[key.kid] = key

    def close(self) -> None:
        self._server.close()

    def _app(self, request: FakeRequest) -> FakeResponse:
        self.hits[request.path] += 1
        if self.unavailable:
            return FakeResponse(503)
        if request.method == "GET" and request.path == "/v1/.well-known/openidconfiguration":
            return FakeResponse(
                200,
                {
                    "issuer": BOT_FRAMEWORK_ISSUER,
                    "authorization_endpoint": "https://invalid.botframework.com/v1/auth",
                    "jwks_uri": self.jwks_url,
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                },
            )
        if request.method == "GET" and request.path == "/v1/.well-known/keys":
            return FakeResponse(200, {"keys": [k.jwk() for k in self.published.values()]})
        return FakeResponse(404)

    def mint(
        self,
        *,
        service_url: str,
        now: dt.datetime | None = None,
        audience: str | None = None,
        issuer: str = BOT_FRAMEWORK_ISSUER,
        lifetime: dt.timedelta = dt.timedelta(hours=1),
        expires_at: dt.datetime | None = None,
        not_before: dt.datetime | None = None,
        kid: str | None = None,
        sign_with: SigningKey | None = None,
        algorithm: str = "RS256",
        extra_claims: Mapping[str, Any] | None = None,
        omit: tuple[str, ...] = (),
    ) -> str:
        """A channel token like the Teams channel's, with any part changed.

        `kid` is the key id put in the header (default: the signing key's); `sign_with` the key that actually
        signs (default: the published key with that kid, else the first published key).
        """
        issued = now or dt.datetime.now(dt.UTC)
        signer = sign_with or (self.published.get(kid) if kid else None) or self.default_key
        claims: dict[str, Any] = {
            "serviceurl": service_url,
            "nbf": int((not_before or issued).timestamp()),
            "exp": int((expires_at or issued + lifetime).timestamp()),
            "iss": issuer,
            "aud": audience if audience is not None else self.app_id,
        }
        claims.update(extra_claims or {})
        for name in omit:
            claims.pop(name, None)
        headers = {"kid": kid or signer.kid}
        return jwt.encode(claims, signer.private_key, algorithm=algorithm, headers=headers)


# -- Microsoft identity platform (msal's token endpoint) -----------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    client_id: str
    scope: str


class FakeLogin:
    """`<login_url>/<tenant>/v2.0/.well-known/openid-configuration` and `/<tenant>/oauth2/v2.0/token` over TLS."""

    def __init__(
        self,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        tls: ssl.SSLContext,
        expires_in: int = 3599,
    ) -> None:
        self.tenant_id = tenant_id
        self.client_id = client_id
        self._client_secret = client_secret
        self.expires_in = expires_in
        self.issued: dict[str, IssuedToken] = {}
        self.token_requests: list[dict[str, str]] = []  # forms, with the secret removed
        self.discovery_requests = 0
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._app, tls=tls)
        self.login_url = self._server.base_url

    @property
    def errors(self) -> list[str]:
        return self._server.errors

    def close(self) -> None:
        self._server.close()

    def scope_of(self, token: str | None) -> str | None:
        """The scope a bearer token was issued for, or None if this fake never issued it."""
        with self._lock:
            issued = self.issued.get(token or "")
        return issued.scope if issued else None

    def _app(self, request: FakeRequest) -> FakeResponse:
        tenant = re.escape(self.tenant_id)
        if request.method == "GET" and re.fullmatch(f"/{tenant}/v2.0/.well-known/openid-configuration", request.path):
            self.discovery_requests += 1
            base = f"{self.login_url}/{self.tenant_id}"
            return FakeResponse(
                200,
                {
                    "issuer": f"{base}/v2.0",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "jwks_uri": f"{self.login_url}/{self.tenant_id}/discovery/v2.0/keys",
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                    "tenant_region_scope": "EU",
                },
            )
        if request.method == "POST" and re.fullmatch(f"/{tenant}/oauth2/v2.0/token", request.path):
            return self._token(request.form())
        if re.fullmatch(r"/[^/]+/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token)", request.path):
            return FakeResponse(400, {"error": "invalid_tenant", "error_description": "AADSTS90002: Tenant not found."})
        return FakeResponse(404)

    def _token(self, form: dict[str, str]) -> FakeResponse:
        secret = form.pop("client_secret", None)
        self.token_requests.append(form)
        if form.get("grant_type") != "client_credentials":
            return FakeResponse(400, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id or not secrets.compare_digest(secret or "", self._client_secret):
            return FakeResponse(
                401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}
            )
        scope = form.get("scope", "")
        if scope not in (BOT_CONNECTOR_SCOPE, GRAPH_SCOPE):
            return FakeResponse(400, {"error": "invalid_scope", "error_description": "AADSTS1002012: bad scope."})
        token = "fake-" + secrets.token_urlsafe(32)
        with self._lock:
            self.issued[token] = IssuedToken(client_id=self.client_id, scope=scope)
        return FakeResponse(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "ext_expires_in": self.expires_in,
                "access_token": token,
            },
        )


# -- Bot Connector --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectorCall:
    """One accepted Bot Connector call: operation id from the swagger, path parameters (decoded), JSON body."""

    operation: str
    method: str
    params: Mapping[str, str]
    query: Mapping[str, list[str]]
    body: Any


@dataclass(frozen=True)
class _Operation:
    operation_id: str
    method: str
    template: str
    pattern: re.Pattern[str]
    body_schema: str | None
    query_params: frozenset[str]


@cache
def _swagger() -> dict[str, Any]:
    swagger = reference_path("botframework-specs", "botframework-channel.swagger.json")
    data: dict[str, Any] = json.loads(swagger.read_text())
    return data


@cache
def _operations() -> tuple[_Operation, ...]:
    ops = []
    for template, item in _swagger()["paths"].items():
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
        for method, op in item.items():
            if method == "parameters":
                continue
            body = next((p for p in op.get("parameters", []) if p.get("in") == "body"), None)
            ops.append(
                _Operation(
                    operation_id=op["operationId"],
                    method=method.upper(),
                    template=template,
                    pattern=re.compile(regex + "$"),
                    body_schema=body["schema"]["$ref"].rsplit("/", 1)[-1] if body else None,
                    query_params=frozenset(p["name"] for p in op.get("parameters", []) if p.get("in") == "query"),
                )
            )
    # Literal segments beat parameters (`/activities/history` before `/activities/{activityId}`).
    return tuple(sorted(ops, key=lambda o: o.template.count("{")))


# Fields the Activity spec makes mandatory (A2010: "Activities MUST include a type field"); the swagger has none.
_REQUIRED = {"Activity": ("type",)}


def swagger_violations(schema_name: str, body: Any) -> list[str]:
    """Problems of a request body against a swagger definition: JSON-schema errors and unknown top-level fields."""
    definitions = _swagger()["definitions"]
    validator = jsonschema.Draft4Validator({"$ref": f"#/definitions/{schema_name}", "definitions": definitions})
    problems = [
        f"{schema_name}{'/'.join(['', *map(str, e.absolute_path)])}: {e.message}" for e in validator.iter_errors(body)
    ]
    if isinstance(body, dict):
        known = definitions[schema_name].get("properties", {})
        problems += [f"{schema_name}: unknown field {name!r}" for name in body if name not in known]
        problems += [f"{schema_name}: missing {name!r}" for name in _REQUIRED.get(schema_name, ()) if name not in body]
    return problems


class FakeConnector:
    """A Bot Connector at `service_url` (`http://127.0.0.1:<port>/amer/`) that checks and records calls."""

    def __init__(self, *, login: FakeLogin, tenant_id: str, region: str = "amer") -> None:
        self._login = login
        self.tenant_id = tenant_id
        self._prefix = f"/{region}"
        self.calls: list[ConnectorCall] = []
        self.violations: list[str] = []
        self.faults = FaultScript()
        self.members: dict[str, list[dict[str, Any]]] = {}
        self.default_members = synthetic_members(2, tenant_id=tenant_id)
        self._message_number = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._server = LoopbackServer(self._app)
        self.service_url = f"{self._server.base_url}{self._prefix}/"

    def close(self) -> None:
        self._server.close()

    @property
    def all_violations(self) -> list[str]:
        return [*self.violations, *self._server.errors]

    def fail_next(self, status: int, **kwargs: Any) -> None:
        self.faults.fail_next(status, **kwargs)

    def activities(self, operation: str | None = None) -> list[ConnectorCall]:
        """Accepted calls, optionally only one swagger operation (e.g. `Conversations_SendToConversation`)."""
        return [c for c in self.calls if operation is None or c.operation == operation]

    def wait_for(self, done: Callable[[list[ConnectorCall]], bool], *, timeout: float = 20.0) -> list[ConnectorCall]:
        """The accepted calls once `done(calls)` holds (the bot sends from other threads or processes); an
        AssertionError with what did arrive if it does not within `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: done(list(self.calls)), timeout=timeout):
                raise AssertionError(f"the Bot Connector fake got only {[c.operation for c in self.calls]}")
            return list(self.calls)

    def _violation(self, request: FakeRequest, problem: str) -> None:
        with self._lock:
            self.violations.append(f"{request.method} {request.path}: {problem}")

    def _app(self, request: FakeRequest) -> FakeResponse:
        if not request.path.startswith(self._prefix + "/"):
            self._violation(request, "not under the serviceUrl")
            return FakeResponse(404)
        path = request.path[len(self._prefix) :]
        op, params = self._match(request.method, path)
        if op is None:
            self._violation(request, "no such path and method in the Bot Connector swagger")
            return FakeResponse(404, error_body("NotFound", "no such operation"))
        if self._login.scope_of(request.bearer()) != BOT_CONNECTOR_SCOPE:
            self._violation(request, "Bearer token is not a Bot Connector token issued by the login fake")
            return FakeResponse(401, {"message": "Authorization has been denied for this request."})
        unknown = set(request.query) - op.query_params
        if unknown:
            self._violation(request, f"unknown query parameters {sorted(unknown)}")
        try:
            body = request.json()
        except ValueError:
            self._violation(request, "body is not JSON")
            return FakeResponse(400, error_body("BadSyntax", "invalid JSON"))
        if op.body_schema is not None:
            if body is None:
                self._violation(request, f"missing {op.body_schema} body")
            for problem in swagger_violations(op.body_schema, body) if body is not None else []:
                self._violation(request, problem)
        elif body is not None:
            self._violation(request, "unexpected body")
        fault = self.faults.take(request)
        if fault is not None:
            return fault
        call = ConnectorCall(op.operation_id, request.method, params, request.query, body)
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
        return self._respond(call)

    @staticmethod
    def _match(method: str, path: str) -> tuple[_Operation | None, dict[str, str]]:
        for op in _operations():
            if op.method != method:
                continue
            found = op.pattern.match(path)
            if found:
                return op, {k: unquote(v) for k, v in found.groupdict().items()}
        return None, {}

    def _respond(self, call: ConnectorCall) -> FakeResponse:
        new_id = "1:1" + secrets.token_urlsafe(30)
        if call.operation in ("Conversations_SendToConversation", "Conversations_ReplyToActivity"):
            return FakeResponse(201, {"id": new_id})
        if call.operation == "Conversations_UpdateActivity":
            return FakeResponse(200, {"id": call.params["activityId"]})
        if call.operation == "Conversations_DeleteActivity":
            return FakeResponse(200)
        if call.operation == "Conversations_CreateConversation":
            channel = ((call.body or {}).get("channelData") or {}).get("channel") or {}
            if call.body.get("isGroup") and channel.get("id"):
                # A new thread in a channel, as recorded: its id is `<channel>;messageid=<the first message's id>`.
                with self._lock:
                    self._message_number += 1
                    message_id = str(1_740_000_000_000 + self._message_number)
                return FakeResponse(201, {"id": f"{channel['id']};messageid={message_id}", "activityId": new_id})
            conversation_id = "a:1" + secrets.token_urlsafe(90)
            return FakeResponse(201, {"id": conversation_id, "activityId": new_id})
        if call.operation == "Conversations_GetConversationMembers":
            return FakeResponse(200, self._members_of(call.params["conversationId"]))
        if call.operation == "Conversations_GetConversationMember":
            # Teams finds a member by their `29:…` id or their Entra object id.
            wanted = call.params["memberId"]
            for member in self._members_of(call.params["conversationId"]):
                if wanted in (member.get("id"), member.get("objectId"), member.get("aadObjectId")):
                    return FakeResponse(200, member)
            return FakeResponse(
                404, error_body("MemberNotFoundInConversation", "The member is not in this conversation.")
            )
        if call.operation == "Conversations_GetConversationPagedMembers":
            members = self._members_of(call.params["conversationId"])
            size = int(call.query.get("pageSize", ["200"])[-1])
            start = int(call.query.get("continuationToken", ["0"])[-1])
            page: dict[str, Any] = {"members": members[start : start + size]}
            if start + size < len(members):
                page["continuationToken"] = str(start + size)
            return FakeResponse(200, page)
        return FakeResponse(501, error_body("NotImplemented", f"the fake does not serve {call.operation}"))

    def _members_of(self, conversation_id: str) -> list[dict[str, Any]]:
        return self.members.get(conversation_id, self.default_members)


# -- Microsoft Graph ------------------------------------------------------------------------------------------------

_CHANNEL_FIELDS = {"displayName", "description", "membershipType"}
_CHANNEL_NAME_FORBIDDEN = re.compile(r"[~#%&*{}+/\\:<>?|'\"]|\.\.")


@dataclass
class FakeTeam:
    team_id: str
    members: list[dict[str, Any]]
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    channel_members: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def graph_member(member: Mapping[str, Any], *, roles: tuple[str, ...] = ()) -> dict[str, Any]:
    """An `aadUserConversationMember` for a recorded Connector member (same person, Graph's shape)."""
    user_id = str(member.get("aadObjectId") or member.get("objectId"))
    return {
        "@odata.type": "#microsoft.graph.aadUserConversationMember",
        "id": base64.b64encode(f"{uuid.uuid4()}##{user_id}".encode()).decode(),
        "roles": list(roles),
        "displayName": member.get("name"),
        "visibleHistoryStartDateTime": "0001-01-01T00:00:00Z",
        "userId": user_id,
        "email": member.get("email"),
        "tenantId": member.get("tenantId"),
    }


class FakeGraph:
    """Graph v1.0 at `base_url` (`http://127.0.0.1:<port>/v1.0`): channels and members of the teams in `teams`."""

    def __init__(self, *, login: FakeLogin, tenant_id: str, page_size: int = 2) -> None:
        self._login = login
        self.tenant_id = tenant_id
        self.page_size = page_size
        self.teams: dict[str, FakeTeam] = {}
        self.violations: list[str] = []
        self.requests: list[tuple[str, str]] = []
        self.faults = FaultScript()
        self._lock = threading.Lock()
        self._server = LoopbackServer(self._app)
        self.base_url = f"{self._server.base_url}/v1.0"

    def close(self) -> None:
        self._server.close()

    @property
    def all_violations(self) -> list[str]:
        return [*self.violations, *self._server.errors]

    def fail_next(self, status: int, **kwargs: Any) -> None:
        self.faults.fail_next(status, **kwargs)

    def add_team(self, team_id: str | None = None, *, member_count: int = 5) -> FakeTeam:
        team_id = team_id or str(uuid.uuid4())
        people = synthetic_members(member_count, tenant_id=self.tenant_id)
        members = [graph_member(p, roles=("owner",) if i == 0 else ()) for i, p in enumerate(people)]
        team = FakeTeam(team_id=team_id, members=members)
        self.teams[team_id] = team
        return team

    def _violation(self, request: FakeRequest, problem: str) -> None:
        with self._lock:
            self.violations.append(f"{request.method} {request.path}: {problem}")

    def _app(self, request: FakeRequest) -> FakeResponse:
        with self._lock:
            self.requests.append((request.method, request.path))
        if self._login.scope_of(request.bearer()) != GRAPH_SCOPE:
            self._violation(request, "Bearer token is not a Graph token issued by the login fake")
            return FakeResponse(401, error_body("InvalidAuthenticationToken", "Access token validation failure."))
        fault = self.faults.take(request)
        if fault is not None:
            return fault
        route = re.fullmatch(r"/v1\.0/teams/([^/]+)/(channels|members)(?:/([^/]+)/members)?", request.path)
        if route is None:
            self._violation(request, "no such Graph route in the fake")
            return FakeResponse(404, error_body("NotFound", "Resource not found"))
        team = self.teams.get(unquote(route.group(1)))
        if team is None:
            return FakeResponse(404, error_body("NotFound", "No team found with Group Id"))
        if route.group(2) == "channels" and route.group(3) is None and request.method == "POST":
            return self._create_channel(request, team)
        if route.group(2) == "members" and request.method == "GET":
            return self._page(request, team.members, f"/v1.0/teams/{route.group(1)}/members")
        if route.group(2) == "channels" and route.group(3) is None and request.method == "GET":
            if set(request.query) - {"$select", "$filter"}:
                self._violation(request, "unknown query parameters for list channels")
            listed = [{k: v for k, v in c.items() if not k.startswith("@")} for c in team.channels.values()]
            return FakeResponse(200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#channels",
                                      "@odata.count": len(listed), "value": listed})  # fmt: skip
        if route.group(2) == "channels" and route.group(3) is not None and request.method == "GET":
            channel_id = unquote(route.group(3))
            if channel_id not in team.channels:
                return FakeResponse(404, error_body("NotFound", "Channel not found"))
            members = team.channel_members.get(channel_id, team.members)
            return self._page(request, members, request.path)
        self._violation(request, "method not served for this Graph route")
        return FakeResponse(405, error_body("BadRequest", "Unsupported method"))

    def _create_channel(self, request: FakeRequest, team: FakeTeam) -> FakeResponse:
        body = request.json()
        if not isinstance(body, dict):
            self._violation(request, "channel body is not a JSON object")
            return FakeResponse(400, error_body("BadRequest", "Invalid request body"))
        unknown = set(body) - _CHANNEL_FIELDS
        if unknown:
            self._violation(request, f"unknown channel fields {sorted(unknown)}")
        name = body.get("displayName")
        if not isinstance(name, str) or not name or len(name) > 50 or _CHANNEL_NAME_FORBIDDEN.search(name):
            return FakeResponse(400, error_body("BadRequest", "Invalid channel displayName"))
        if body.get("membershipType", "standard") != "standard":
            self._violation(request, "copbot only makes standard channels")
        if any(c["displayName"].casefold() == name.casefold() for c in team.channels.values()):
            return FakeResponse(400, error_body("NameAlreadyExists", "Channel name already existed."))
        channel_id = f"19:{uuid.uuid4().hex}@thread.tacv2"
        channel = {
            "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#teams('{team.team_id}')/channels/$entity",
            "id": channel_id,
            "createdDateTime": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "displayName": name,
            "description": body.get("description"),
            "membershipType": "standard",
            "webUrl": (
                f"https://teams.microsoft.com/l/channel/{quote(channel_id, safe='')}/{quote(name, safe='')}"
                f"?groupId={team.team_id}&tenantId={self.tenant_id}"
            ),
        }
        team.channels[channel_id] = channel
        return FakeResponse(201, channel)

    def _page(self, request: FakeRequest, members: list[dict[str, Any]], path: str) -> FakeResponse:
        unknown = set(request.query) - {"$skiptoken", "$top"}
        if unknown:
            self._violation(request, f"unknown query parameters {sorted(unknown)}")
        start = int(request.query.get("$skiptoken", ["0"])[-1])
        size = self.page_size
        page: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#teams('...')/members",
            "@odata.count": len(members),
            "value": members[start : start + size],
        }
        if start + size < len(members):
            page["@odata.nextLink"] = f"{self.base_url.removesuffix('/v1.0')}{path}?$skiptoken={start + size}"
        return FakeResponse(200, page)


# -- everything together -------------------------------------------------------------------------------------------


@dataclass
class FakeTeamsCloud:
    """All four fakes for one bot registration, and the settings that point the bot at them."""

    app_id: str
    app_password: str = field(repr=False)
    tenant_id: str
    tls: TlsMaterial = field(repr=False)
    keys: FakeBotFrameworkKeys
    login: FakeLogin
    connector: FakeConnector
    graph: FakeGraph

    def settings(self) -> dict[str, str]:
        """The `TEAMS_*` / `GRAPH_API_URL` settings (environment names) for a bot using these fakes.

        The login fake is TLS with a throw-away CA: give the bot an `httpx.Client(verify=tls.client_context())`,
        or point `SSL_CERT_FILE` at a file holding `tls.ca_pem`.
        """
        return {
            "TEAMS_APP_ID": self.app_id,
            "TEAMS_APP_PASSWORD": self.app_password,
            "TEAMS_TENANT_ID": self.tenant_id,
            "TEAMS_LOGIN_URL": self.login.login_url,
            "TEAMS_OPENID_METADATA_URL": self.keys.metadata_url,
            "GRAPH_API_URL": self.graph.base_url,
        }

    def violations(self) -> list[str]:
        return [
            *self.connector.all_violations,
            *self.graph.all_violations,
            *self.login.errors,
            *self.keys.errors,
        ]

    def close(self) -> None:
        for fake in (self.connector, self.graph, self.login, self.keys):
            fake.close()


@contextlib.contextmanager
def fake_teams_cloud(
    *,
    tls: TlsMaterial,
    signing_keys: list[SigningKey],
    app_id: str | None = None,
    app_password: str | None = None,
    tenant_id: str | None = None,
) -> Iterator[FakeTeamsCloud]:
    """Start the four fakes, yield them, stop them."""
    app_id = app_id or str(uuid.uuid4())
    app_password = app_password or secrets.token_urlsafe(24)
    tenant_id = tenant_id or str(uuid.uuid4())
    started: list[Any] = []
    try:
        keys = FakeBotFrameworkKeys(app_id=app_id, keys=signing_keys)
        started.append(keys)
        login = FakeLogin(tenant_id=tenant_id, client_id=app_id, client_secret=app_password, tls=tls.server_context())
        started.append(login)
        connector = FakeConnector(login=login, tenant_id=tenant_id)
        started.append(connector)
        graph = FakeGraph(login=login, tenant_id=tenant_id)
        started.append(graph)
        yield FakeTeamsCloud(
            app_id=app_id,
            app_password=app_password,
            tenant_id=tenant_id,
            tls=tls,
            keys=keys,
            login=login,
            connector=connector,
            graph=graph,
        )
    finally:
        for fake in reversed(started):
            fake.close()


# -- small test doubles ------------------------------------------------------------------------------------------


class SettableClock:
    """A `Clock` that stays where a test puts it."""

    def __init__(self, now: dt.datetime) -> None:
        self.current = now

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, delta: dt.timedelta) -> None:
        self.current += delta


class RecordingSleep:
    """A `sleep` that only records how long the code under test asked to wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)

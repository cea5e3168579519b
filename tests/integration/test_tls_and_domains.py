"""Custom domains and uploaded certificates, through the real HAProxy."""

from __future__ import annotations

import datetime
import socket
import ssl
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dkos_server import DkosServer

pytestmark = pytest.mark.docker

SHOP = "shop.example.com"


def self_signed(name: str, *, days: int = 30, offset_days: int = 0) -> tuple[str, str]:
    """A certificate for `name` that is its own CA, and its key, as PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=offset_days) - datetime.timedelta(hours=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def fetch(port: int, host: str, ca_pem: str) -> bytes:
    context = ssl.create_default_context(cadata=ca_pem)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


def shop(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "shop",
        "image": "dkos-demo:1",
        "instances": 1,
        "resources": {"memory": 32},
        "ports": [{"name": "http", "container_port": 8080}],
        "health_check": {"path": "/health"},
        "domains": [SHOP],
    }
    spec.update(overrides)
    return spec


def test_an_uploaded_certificate_is_served_for_its_domain_and_its_key_never_returned(server: DkosServer) -> None:
    cert, key = self_signed(SHOP)
    stored = server.post("/v1/certificates", json={"name": "shop", "certificate": cert, "key": key})
    assert stored.status_code == 201, stored.text
    assert stored.json()["names"] == [SHOP] and "key" not in stored.json()
    server.deploy(shop())
    server.wait_healthy("shop", 1)
    assert fetch(server.https_port, SHOP, cert).startswith(b"HTTP/1.1 200")
    listed = server.get("/v1/certificates").text
    assert "PRIVATE KEY" not in listed and '"shop"' in listed
    bundle = next((server.data_dir / "tls").rglob("shop.pem"))
    assert bundle.stat().st_mode & 0o777 == 0o600


def test_a_custom_domain_without_an_upload_gets_a_local_ca_certificate(server: DkosServer) -> None:
    server.deploy(shop())
    server.wait_healthy("shop", 1)
    ca = server.get("/v1/certificates/ca").text
    assert fetch(server.https_port, SHOP, ca).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    ("make", "field", "reason"),
    [
        (lambda: (self_signed(SHOP)[0], self_signed(SHOP)[1]), "key", "does not match"),
        (lambda: self_signed(SHOP, days=1, offset_days=-10), "certificate", "expired on"),
        (lambda: ("not a certificate", self_signed(SHOP)[1]), "certificate", "not a PEM certificate"),
    ],
    ids=["mismatched key", "expired", "garbage"],
)
def test_a_bad_certificate_is_refused_naming_the_field(server: DkosServer, make: Any, field: str, reason: str) -> None:
    cert, key = make()
    refused = server.post("/v1/certificates", json={"name": "bad", "certificate": cert, "key": key})
    assert refused.status_code == 422
    assert any(d["field"] == field and reason in d["rule"] for d in refused.json()["details"]), refused.json()
    assert server.get("/v1/certificates").json()["certificates"] == []


def test_a_domain_another_app_uses_is_refused_naming_the_owner(server: DkosServer) -> None:
    server.deploy(shop())
    taken = server.post("/v1/apps", json=shop(name="copycat"))
    assert taken.status_code == 409
    assert taken.json()["message"] == f"domain {SHOP} is used by app 'shop' in project 'default'"

from __future__ import annotations

import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from dkos.core.errors import DkosError, InvalidInput
from dkos.lb import certs, model

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> certs.CertificateStore:
    return certs.CertificateStore(tmp_path / "tls")


def _handshake(bundle: Path, *, ca_pem: str, server_hostname: str) -> x509.Certificate:
    """Serve `bundle` on 127.0.0.1 and connect to it trusting only `ca_pem`: proves the chain for real.

    Returns the certificate the client saw; raises what the client's handshake raised."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(bundle)  # the key comes from the same file, as HAProxy reads it
    client_ctx = ssl.create_default_context(cadata=ca_pem)  # with cadata, no system roots are loaded
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with conn, server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass  # the client rejected the certificate: what the client raised is what the test checks

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                client_ctx.wrap_socket(raw, server_hostname=server_hostname) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
                assert der is not None
                tls.sendall(b"x")
                return x509.load_der_x509_certificate(der)
        finally:
            server.join(timeout=5)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@dataclass(frozen=True)
class Pair:
    """A certificate chain and key as a user would upload them."""

    cert_pem: str
    key_pem: str
    leaf: x509.Certificate


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: PrivateKey,
    *,
    issuer: tuple[str, PrivateKey] | None = None,
    sans: list[str] | None = None,
    ca: bool = False,
    not_before: datetime = NOW - timedelta(days=10),
    not_after: datetime = NOW + timedelta(days=80),
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key, algorithm)


def _pem(*chain: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)


def _key_pem(key: PrivateKey, encryption: serialization.KeySerializationEncryption | None = None) -> str:
    fmt = serialization.PrivateFormat.PKCS8
    if isinstance(key, rsa.RSAPrivateKey):
        fmt = serialization.PrivateFormat.TraditionalOpenSSL  # "BEGIN RSA PRIVATE KEY", as many tools still write
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption or serialization.NoEncryption()).decode()


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _self_signed(
    names: list[str],
    *,
    not_before: datetime = NOW - timedelta(days=10),
    not_after: datetime = NOW + timedelta(days=80),
) -> Pair:
    key = _ec_key()
    leaf = _cert(names[0], key, sans=names, not_before=not_before, not_after=not_after)
    return Pair(_pem(leaf), _key_pem(key), leaf)


@pytest.fixture(scope="module")
def rsa_chain() -> Pair:
    """root → intermediate → leaf (RSA), uploaded as leaf + intermediate: the usual shape of a bought certificate."""
    root_key, inter_key = _ec_key(), _ec_key()
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    inter = _cert("Test Intermediate", inter_key, issuer=("Test Root", root_key), ca=True)
    leaf = _cert(
        "shop.example.com",
        leaf_key,
        issuer=("Test Intermediate", inter_key),
        sans=["shop.example.com", "*.shop.example.com"],
    )
    return Pair(_pem(leaf, inter), _key_pem(leaf_key), leaf)


def _problems(exc: pytest.ExceptionInfo[InvalidInput]) -> list[tuple[str, str]]:
    return [(p.field, p.rule) for p in exc.value.problems]


# --- the local CA -------------------------------------------------------------------------------


def test_the_ca_is_created_once_and_reused(tmp_path: Path) -> None:
    first = certs.CertificateStore(tmp_path / "tls")
    pem = first.ca_certificate_pem(now=NOW)
    ca = x509.load_pem_x509_certificate(pem.encode())

    again = certs.CertificateStore(tmp_path / "tls")  # a restarted server
    assert again.ca_certificate_pem(now=NOW + timedelta(days=1)) == pem
    assert first.ca_certificate_pem() == pem

    cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(cn, str)
    assert cn.startswith("dkos local CA ")
    assert len(cn.removeprefix("dkos local CA ")) == 8
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == timedelta(days=3650)
    assert ca.not_valid_before_utc <= NOW
    assert _mode(tmp_path / "tls" / "ca" / "ca.key") == 0o600


def test_two_stores_have_different_cas(tmp_path: Path) -> None:
    one = certs.CertificateStore(tmp_path / "a").ca_certificate_pem(now=NOW)
    other = certs.CertificateStore(tmp_path / "b").ca_certificate_pem(now=NOW)
    assert one != other


def test_a_ca_certificate_without_its_key_is_an_error_not_a_silent_new_ca(tmp_path: Path) -> None:
    certs.CertificateStore(tmp_path / "tls").ca_certificate_pem(now=NOW)
    (tmp_path / "tls" / "ca" / "ca.key").unlink()
    with pytest.raises(DkosError, match="remove the directory to make a new CA"):
        certs.CertificateStore(tmp_path / "tls").ca_certificate_pem(now=NOW)


# --- issued leaves ------------------------------------------------------------------------------


def test_an_issued_leaf_verifies_against_the_ca_in_a_real_handshake(store: certs.CertificateStore) -> None:
    issued = store.issue(["web.default.localhost", "shop.example.com"])  # wall clock: the handshake checks dates
    ca_pem = store.ca_certificate_pem()

    for host in ("web.default.localhost", "shop.example.com"):
        seen = _handshake(issued.path, ca_pem=ca_pem, server_hostname=host)
        assert seen.fingerprint(hashes.SHA256()).hex() == issued.fingerprint

    public = seen.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    assert issued.names == ("web.default.localhost", "shop.example.com")
    assert issued.issuer == x509.load_pem_x509_certificate(ca_pem.encode()).subject.rfc4514_string()
    assert issued.not_after - issued.not_before == timedelta(days=90, hours=1)  # backdated an hour


def test_a_handshake_fails_for_a_name_the_leaf_does_not_cover(store: certs.CertificateStore) -> None:
    issued = store.issue(["web.default.localhost"])
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        _handshake(issued.path, ca_pem=store.ca_certificate_pem(), server_hostname="api.default.localhost")


def test_a_handshake_fails_for_a_client_trusting_another_ca(tmp_path: Path) -> None:
    issued = certs.CertificateStore(tmp_path / "a").issue(["web.default.localhost"])
    other_ca = certs.CertificateStore(tmp_path / "b").ca_certificate_pem()
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        _handshake(issued.path, ca_pem=other_ca, server_hostname="web.default.localhost")


def test_a_wildcard_leaf_covers_one_label(store: certs.CertificateStore) -> None:
    issued = store.issue(["*.default.localhost"])
    ca_pem = store.ca_certificate_pem()

    _handshake(issued.path, ca_pem=ca_pem, server_hostname="web.default.localhost")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(issued.path, ca_pem=ca_pem, server_hostname="a.web.default.localhost")


def test_an_issued_leaf_passes_the_webpki_policy_at_any_time_in_its_validity(store: certs.CertificateStore) -> None:
    """cryptography's verifier applies the CA/Browser Forum profile (stricter than OpenSSL) at a chosen time."""
    issued = store.issue(["*.default.localhost", "default.localhost"], now=NOW)
    leaf = x509.load_pem_x509_certificates(issued.path.read_bytes())[0]
    ca = x509.load_pem_x509_certificate(store.ca_certificate_pem().encode())
    trust = verification.Store([ca])

    for at in (NOW, NOW + timedelta(days=89)):
        for host in ("default.localhost", "api.default.localhost"):
            verifier = verification.PolicyBuilder().store(trust).time(at).build_server_verifier(x509.DNSName(host))
            chain = verifier.verify(leaf, [])
            assert chain[-1] == ca
    expired = verification.PolicyBuilder().store(trust).time(NOW + timedelta(days=91))
    with pytest.raises(verification.VerificationError):
        expired.build_server_verifier(x509.DNSName("default.localhost")).verify(leaf, [])


def test_names_are_lower_cased_and_deduplicated(store: certs.CertificateStore) -> None:
    issued = store.issue(["Web.Default.Localhost.", "web.default.localhost", "API.default.localhost"], now=NOW)
    assert issued.names == ("web.default.localhost", "api.default.localhost")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("*.localhost", "a wildcard needs at least two labels"),
        ("web.*.localhost", "'*' only as a whole first label"),
        ("w*.default.localhost", "'*' only as a whole first label"),
        ("-web.localhost", "not starting or ending with '-'"),
        ("a..b", "labels are 1 to 63"),
        ("a b.localhost", "labels are 1 to 63"),
        ("bücher.example", "use the ASCII (xn--) form"),
        ("", "1 to 253 characters"),
        ("x" * 64 + ".example", "labels are 1 to 63"),
    ],
)
def test_names_no_client_could_match_are_refused(store: certs.CertificateStore, name: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        store.issue([name], now=NOW)
    [(field, rule)] = _problems(exc)
    assert field == "domains"
    assert reason in rule


def test_issuing_needs_a_name(store: certs.CertificateStore) -> None:
    with pytest.raises(InvalidInput, match="at least one domain name"):
        store.issue([], now=NOW)


def test_a_naive_now_is_refused(store: certs.CertificateStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.issue(["web.default.localhost"], now=datetime(2026, 3, 1, 12, 0))


def test_a_long_name_gets_no_common_name_and_a_critical_san(store: certs.CertificateStore) -> None:
    name = "a" * 60 + ".default.localhost"
    issued = store.issue([name], now=NOW)
    leaf = x509.load_pem_x509_certificates(issued.path.read_bytes())[0]
    assert len(leaf.subject) == 0
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert issued.names == (name,)


# --- renewal ------------------------------------------------------------------------------------


def test_ensure_issued_keeps_a_leaf_with_thirty_days_or_more_left(store: certs.CertificateStore) -> None:
    first = store.ensure_issued(["web.default.localhost"], NOW)
    mtime = first.path.stat().st_mtime_ns

    again = store.ensure_issued(["web.default.localhost"], NOW + timedelta(days=60))  # exactly 30 days left
    assert again == first
    assert first.path.stat().st_mtime_ns == mtime

    reordered = store.ensure_issued(["WEB.default.localhost"], NOW + timedelta(days=1))
    assert reordered == first


def test_ensure_issued_reissues_with_less_than_thirty_days_left(store: certs.CertificateStore) -> None:
    first = store.ensure_issued(["*.default.localhost"], NOW)
    later = NOW + timedelta(days=60, seconds=1)

    renewed = store.ensure_issued(["*.default.localhost"], later)
    assert renewed.fingerprint != first.fingerprint
    assert renewed.path == first.path  # same file: the crt-list does not change, the bundle does
    assert renewed.not_after == later + timedelta(days=90)
    assert store.ensure_issued(["*.default.localhost"], later) == renewed


def test_ensure_issued_reissues_when_the_ca_was_replaced(tmp_path: Path) -> None:
    directory = tmp_path / "tls"
    first = certs.CertificateStore(directory).ensure_issued(["web.default.localhost"], NOW)
    for path in (directory / "ca").iterdir():
        path.unlink()

    fresh = certs.CertificateStore(directory)
    renewed = fresh.ensure_issued(["web.default.localhost"], NOW)
    assert renewed.fingerprint != first.fingerprint
    assert renewed.issuer != first.issuer
    ca = x509.load_pem_x509_certificate(fresh.ca_certificate_pem().encode())
    x509.load_pem_x509_certificates(renewed.path.read_bytes())[0].verify_directly_issued_by(ca)


def test_ensure_issued_reissues_a_damaged_bundle(store: certs.CertificateStore) -> None:
    first = store.ensure_issued(["web.default.localhost"], NOW)
    first.path.write_text("oops")
    renewed = store.ensure_issued(["web.default.localhost"], NOW)
    assert renewed.path == first.path
    assert renewed.fingerprint != first.fingerprint


def test_different_name_sets_get_different_files(store: certs.CertificateStore) -> None:
    one = store.ensure_issued(["web.default.localhost"], NOW)
    two = store.ensure_issued(["web.default.localhost", "www.example.com"], NOW)
    assert one.path != two.path
    assert one.path.name.startswith("web.default.localhost-")
    assert store.ensure_issued(["*.default.localhost"], NOW).path.name.startswith("_.default.localhost-")


def test_renewal_and_validity_can_be_set(tmp_path: Path) -> None:
    store = certs.CertificateStore(tmp_path, leaf_validity=timedelta(days=7), renew_before=timedelta(days=2))
    first = store.ensure_issued(["web.default.localhost"], NOW)
    assert first.not_after == NOW + timedelta(days=7)
    assert store.ensure_issued(["web.default.localhost"], NOW + timedelta(days=5)) == first
    assert store.ensure_issued(["web.default.localhost"], NOW + timedelta(days=5, hours=1)) != first


def test_no_key_in_the_metadata(store: certs.CertificateStore) -> None:
    issued = store.ensure_issued(["web.default.localhost"], NOW)
    assert "PRIVATE KEY" not in repr(issued)
    assert set(vars(issued)) == {"names", "not_before", "not_after", "fingerprint", "issuer", "path"}


# --- uploads ------------------------------------------------------------------------------------


def test_a_good_chain_and_key_pass_and_report_what_they_cover(rsa_chain: Pair) -> None:
    uploaded = certs.validate_upload(rsa_chain.cert_pem, rsa_chain.key_pem, now=NOW)
    assert uploaded == certs.UploadedCertificate(
        names=("shop.example.com", "*.shop.example.com"),
        not_before=rsa_chain.leaf.not_valid_before_utc,
        not_after=rsa_chain.leaf.not_valid_after_utc,
        fingerprint=rsa_chain.leaf.fingerprint(hashes.SHA256()).hex(),
        issuer="CN=Test Intermediate",
        path=None,
    )


def test_a_self_signed_ec_certificate_passes() -> None:
    pair = _self_signed(["app.example.org"])
    assert certs.validate_upload(pair.cert_pem, pair.key_pem, now=NOW).names == ("app.example.org",)


def test_without_a_san_the_common_name_is_the_name() -> None:
    key = _ec_key()
    leaf = _cert("Legacy.Example.com", key)
    assert certs.validate_upload(_pem(leaf), _key_pem(key), now=NOW).names == ("legacy.example.com",)


def _other_key_pem() -> str:
    return _key_pem(_ec_key())


def _encrypted_pkcs8() -> str:
    return (
        _ec_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        .decode()
    )


def _encrypted_legacy() -> str:
    return (
        _ec_key()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"secret"),
        )
        .decode()
    )


GOOD = _self_signed(["app.example.org"])
EXPIRED = _self_signed(
    ["old.example.org"], not_before=datetime(2025, 1, 1, tzinfo=UTC), not_after=datetime(2026, 1, 1, tzinfo=UTC)
)
FUTURE = _self_signed(["new.example.org"], not_before=datetime(2026, 4, 1, 8, 30, tzinfo=UTC))
WEAK_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
ED_KEY = ed25519.Ed25519PrivateKey.generate()
K1_KEY = ec.generate_private_key(ec.SECP256K1())


@pytest.mark.parametrize(
    ("cert_pem", "key_pem", "expected"),
    [
        pytest.param(
            GOOD.cert_pem, _other_key_pem(), [("key", "the key does not match the certificate")], id="mismatch"
        ),
        pytest.param(
            EXPIRED.cert_pem, EXPIRED.key_pem, [("certificate", "expired on 2026-01-01 at 00:00 UTC")], id="expired"
        ),
        pytest.param(
            FUTURE.cert_pem, FUTURE.key_pem, [("certificate", "not valid before 2026-04-01 at 08:30 UTC")], id="future"
        ),
        pytest.param("garbage", GOOD.key_pem, [("certificate", "not a PEM certificate")], id="garbage-cert"),
        pytest.param(GOOD.key_pem, GOOD.key_pem, [("certificate", "not a PEM certificate")], id="key-as-cert"),
        pytest.param(GOOD.cert_pem, "garbage", [("key", "not a PEM private key")], id="garbage-key"),
        pytest.param(GOOD.cert_pem, GOOD.cert_pem, [("key", "not a PEM private key")], id="cert-as-key"),
        pytest.param(
            "garbage",
            "garbage",
            [("certificate", "not a PEM certificate"), ("key", "not a PEM private key")],
            id="both-garbage",
        ),
        pytest.param(
            GOOD.cert_pem,
            _encrypted_pkcs8(),
            [("key", "encrypted private keys are not supported")],
            id="pkcs8-encrypted",
        ),
        pytest.param(
            GOOD.cert_pem,
            _encrypted_legacy(),
            [("key", "encrypted private keys are not supported")],
            id="legacy-encrypted",
        ),
        pytest.param(
            _pem(_cert("weak.example.org", WEAK_KEY, sans=["weak.example.org"])),
            _key_pem(WEAK_KEY),
            [("key", "an RSA key of 1024 bits is too weak; use ≥ 2048")],
            id="rsa-1024",
        ),
        pytest.param(
            _pem(_cert("ed.example.org", ED_KEY, sans=["ed.example.org"])),
            _key_pem(ED_KEY),
            [("key", "only RSA and EC (ECDSA) keys are supported")],
            id="ed25519",
        ),
        pytest.param(
            _pem(_cert("k1.example.org", K1_KEY, sans=["k1.example.org"])),
            _key_pem(K1_KEY),
            [("key", "the EC curve secp256k1 is not supported; use P-256 or P-384")],
            id="secp256k1",
        ),
        pytest.param(
            EXPIRED.cert_pem,
            _other_key_pem(),
            [("key", "the key does not match the certificate"), ("certificate", "expired on 2026-01-01 at 00:00 UTC")],
            id="every-problem-at-once",
        ),
    ],
)
def test_a_bad_upload_is_refused_naming_the_field(cert_pem: str, key_pem: str, expected: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidInput) as exc:
        certs.validate_upload(cert_pem, key_pem, now=NOW)
    assert _problems(exc) == expected
    assert exc.value.status == 422


def test_a_chain_out_of_order_is_refused(rsa_chain: Pair) -> None:
    leaf_pem, inter_pem = x509.load_pem_x509_certificates(rsa_chain.cert_pem.encode())
    with pytest.raises(InvalidInput) as exc:
        certs.validate_upload(_pem(inter_pem, leaf_pem), rsa_chain.key_pem, now=NOW)
    assert (
        "certificate",
        "certificate 2 in the chain did not sign certificate 1: put the leaf first, then each intermediate in order",
    ) in _problems(exc)


def test_a_certificate_naming_no_host_is_refused() -> None:
    key = _ec_key()
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Nobody")]))
        .issuer_name(_name("issuer"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(InvalidInput, match="it names no host"):
        certs.validate_upload(_pem(leaf), _key_pem(key), now=NOW)


def test_the_api_error_names_the_field() -> None:
    with pytest.raises(InvalidInput) as exc:
        certs.validate_upload(GOOD.cert_pem, _other_key_pem(), now=NOW)
    assert exc.value.to_json() == {
        "error": "invalid",
        "message": "key: the key does not match the certificate",
        "details": [{"field": "key", "rule": "the key does not match the certificate"}],
    }


def test_a_stored_upload_is_served_by_a_real_handshake(store: certs.CertificateStore) -> None:
    now = datetime.now(UTC)
    root_key, leaf_key = _ec_key(), rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = _cert(
        "Upload Root", root_key, ca=True, not_before=now - timedelta(days=1), not_after=now + timedelta(days=9)
    )
    leaf = _cert(
        "shop.example.com",
        leaf_key,
        issuer=("Upload Root", root_key),
        sans=["shop.example.com"],
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=9),
    )
    # Blank lines and text around the blocks, as people paste them.
    pasted_cert = "Subject: shop\n" + _pem(leaf) + "\n\n"
    uploaded = store.put_upload("shop", pasted_cert, "\n" + _key_pem(leaf_key), now=now)

    assert uploaded.path == store.directory / "certs" / "shop.pem"
    assert _mode(uploaded.path) == 0o600
    text = uploaded.path.read_text()
    assert text.startswith("-----BEGIN CERTIFICATE-----") and "-----BEGIN PRIVATE KEY-----" in text
    assert "Subject" not in text
    _handshake(uploaded.path, ca_pem=_pem(root), server_hostname="shop.example.com")


def test_a_refused_upload_writes_nothing(store: certs.CertificateStore) -> None:
    with pytest.raises(InvalidInput):
        store.put_upload("old", EXPIRED.cert_pem, EXPIRED.key_pem, now=NOW)
    assert not (store.directory / "certs" / "old.pem").exists()


# --- files --------------------------------------------------------------------------------------


def test_put_writes_a_0600_bundle_atomically_and_remove_is_idempotent(store: certs.CertificateStore) -> None:
    bundle = GOOD.cert_pem + GOOD.key_pem
    path = store.put("app", bundle)
    assert path == store.directory / "certs" / "app.pem"
    assert path.read_text() == bundle
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700

    store.put("app", bundle + "\n")
    assert path.read_text() == bundle + "\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["app.pem"]  # no temporary file left behind

    store.remove("app")
    store.remove("app")
    assert not path.exists()


def test_put_fixes_the_mode_of_an_existing_file(store: certs.CertificateStore) -> None:
    path = store.put("app", "x")
    path.chmod(0o644)
    store.put("app", "x")
    assert _mode(path) == 0o600


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "UPPER", "x" * 129])
def test_a_bundle_name_must_be_a_plain_file_name(store: certs.CertificateStore, name: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        store.put(name, "x")
    assert [field for field, _ in _problems(exc)] == ["name"]
    with pytest.raises(InvalidInput):
        store.remove(name)


def test_every_key_file_is_0600(store: certs.CertificateStore) -> None:
    store.ensure_issued(["web.default.localhost"], NOW)
    store.default_certificate(now=NOW)
    store.put_upload("app", GOOD.cert_pem, GOOD.key_pem, now=NOW)
    with_keys = [p for p in store.directory.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    assert len(with_keys) == 4  # the CA key, two issued bundles, one upload
    assert all(_mode(p) == 0o600 for p in with_keys)
    assert _mode(store.directory / "ca" / "ca.pem") == 0o644  # public: users copy it


def test_the_default_certificate_is_made_once(store: certs.CertificateStore) -> None:
    path = store.default_certificate(now=NOW)
    pem = path.read_bytes()
    assert store.default_certificate(now=NOW + timedelta(days=1)) == path
    assert path.read_bytes() == pem
    leaf = x509.load_pem_x509_certificates(pem)[0]
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["dkos.invalid"]


# --- the crt-list -------------------------------------------------------------------------------


def test_the_crt_list_is_sorted_and_lists_the_names(store: certs.CertificateStore, tmp_path: Path) -> None:
    shop, wild = tmp_path / "certs" / "shop.pem", tmp_path / "issued" / "wild.pem"
    path = store.write_crt_list([(wild, ["*.default.localhost"]), (shop, ["www.shop.com", "Shop.com", "shop.com"])])
    assert path == store.directory / "crt-list.txt"
    assert path.read_text() == (
        f"{shop} [alpn h2,http/1.1] shop.com www.shop.com\n{wild} [alpn h2,http/1.1] *.default.localhost\n"
    )

    mtime = path.stat().st_mtime_ns
    store.write_crt_list([(shop, ["shop.com", "www.shop.com"]), (wild, ["*.default.localhost"])])
    assert path.stat().st_mtime_ns == mtime  # same bytes: not rewritten, nothing for the LB to reload


def test_an_entry_without_names_uses_the_names_in_its_certificate(
    store: certs.CertificateStore, tmp_path: Path
) -> None:
    path = store.write_crt_list([(tmp_path / "a.pem", [])])
    assert path.read_text() == f"{tmp_path / 'a.pem'} [alpn h2,http/1.1]\n"


def test_an_empty_crt_list_is_an_empty_file(store: certs.CertificateStore) -> None:
    assert store.write_crt_list([]).read_text() == ""


def test_the_crt_list_refuses_a_name_in_two_entries(store: certs.CertificateStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"shop\.com is listed for both"):
        store.write_crt_list([(tmp_path / "a.pem", ["shop.com"]), (tmp_path / "b.pem", ["SHOP.com"])])


def test_the_crt_list_refuses_paths_with_blanks(store: certs.CertificateStore, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot contain blanks"):
        store.write_crt_list([(tmp_path / "my certs" / "a.pem", ["shop.com"])])


def test_tls_gives_the_lb_its_files(store: certs.CertificateStore) -> None:
    issued = store.ensure_issued(["*.default.localhost"], NOW)
    tls = store.tls([(issued.path, list(issued.names))], now=NOW)
    assert tls == model.Tls(crt_list=store.crt_list_path, default_certificate=store.default_certificate(now=NOW))
    assert tls.crt_list.read_text() == f"{issued.path} [alpn h2,http/1.1] *.default.localhost\n"
    assert tls.default_certificate.exists()


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    before = threading.active_count()
    yield
    assert threading.active_count() == before

"""TLS certificates for the HTTPS listener: a local CA dkos manages, uploaded certificates,
and the crt-list file that tells HAProxy which PEM bundle answers which SNI name.

Where it sits: the API checks and stores an uploaded certificate through
`CertificateStore.put_upload` (a bad one raises `InvalidInput` naming `certificate` or `key`,
which the API answers with 422); the orchestration package asks `ensure_issued` for a
certificate signed by the local CA for every host that has no uploaded one; the LB manager
puts `CertificateStore.tls(entries)` into `LbConfig.tls`. HAProxy does the SNI matching
itself, so nothing here picks a certificate for a host name.

The store directory (`<data_dir>/tls/`):

    ca/ca.key          the local CA's private key (0600); it never leaves this module
    ca/ca.pem          the local CA's certificate: what users trust (`curl --cacert`)
    issued/<slug>.pem  a CA-signed leaf and its key (0600); the slug is derived from the names
    certs/<name>.pem   an uploaded chain and its key (0600)
    crt-list.txt       `<pem> [alpn h2,http/1.1] <sni names...>`, one line per bundle, sorted

Every file is written to a temporary file and renamed over the old one, so HAProxy never reads
half a file; a file whose bytes and mode are already right is not rewritten, so applying the
same state twice changes nothing. Private keys are only ever written into these files: the
metadata the methods return (names, dates, fingerprint, issuer, path) can be logged, stored
and shown by the API.

Keys are ECDSA P-256: a full handshake costs ≈ 1.4× less than with RSA-2048 (measured with
HAProxy here), and full handshakes are what limits an HTTPS listener's connection rate.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dkos.core.errors import DkosError, FieldProblem, InvalidInput
from dkos.lb import model

DEFAULT_NAME = "dkos.invalid"
"""The name on the default certificate. `.invalid` is reserved (RFC 2606), so it never
matches a real host: a client that sees it knows no certificate was configured for its name."""

CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=90)
RENEW_BEFORE = timedelta(days=30)
BACKDATE = timedelta(hours=1)
"""Leaves start an hour before they are made, so a client whose clock runs a little behind
does not reject a certificate that was just issued."""

ALPN = "h2,http/1.1"
MIN_RSA_BITS = 2048
"""Debian's OpenSSL 3 (security level 2) refuses smaller RSA keys: HAProxy would not load them."""
EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")
"""The curves browsers and HAProxy accept for certificates."""

_BUNDLE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class IssuedCertificate:
    """A leaf signed by the local CA; its bundle (leaf + key) is at `path`."""

    names: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    fingerprint: str
    """Hex SHA-256 of the DER leaf (`openssl x509 -fingerprint -sha256`, lower case, no colons)."""
    issuer: str
    """RFC 4514 form, e.g. `CN=dkos local CA 3f9a1c2b`."""
    path: Path


@dataclass(frozen=True)
class UploadedCertificate:
    """What a user's certificate covers. `path` is None until `CertificateStore.put_upload` stores it."""

    names: tuple[str, ...]
    """Its SAN DNS names, lower case, or its common name when it has no SAN."""
    not_before: datetime
    not_after: datetime
    fingerprint: str
    """Hex SHA-256 of the DER leaf (`openssl x509 -fingerprint -sha256`, lower case, no colons)."""
    issuer: str
    path: Path | None = None


@dataclass(frozen=True)
class _Authority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def validate_upload(cert_pem: str, key_pem: str, *, now: datetime) -> UploadedCertificate:
    """Check a user's chain and key, as HAProxy and clients will need them, and say what they cover.

    The chain is the leaf first, then its intermediates, each signed by the next (the root may
    end it). The key must match the leaf, and the leaf must be valid at `now`. Every problem
    found is reported at once, as `InvalidInput` naming the field `certificate` or `key`.
    """
    now = _utc(now)
    problems: list[FieldProblem] = []
    chain = _parse_chain(cert_pem, problems)
    key = _parse_key(key_pem, problems)
    if not chain:
        raise InvalidInput(problems)
    leaf = chain[0]
    if key is not None and _public_der(key.public_key()) != _public_der(leaf.public_key()):
        problems.append(FieldProblem("key", "the key does not match the certificate"))
    if now < leaf.not_valid_before_utc:
        problems.append(FieldProblem("certificate", f"not valid before {_when(leaf.not_valid_before_utc)}"))
    if now >= leaf.not_valid_after_utc:
        problems.append(FieldProblem("certificate", f"expired on {_when(leaf.not_valid_after_utc)}"))
    names = _names_of(leaf)
    if not names:
        problems.append(FieldProblem("certificate", "it names no host: no subjectAltName DNS name and no common name"))
    if problems:
        raise InvalidInput(problems)
    return UploadedCertificate(
        names=names,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint=_fingerprint(leaf),
        issuer=leaf.issuer.rfc4514_string(),
    )


class CertificateStore:
    """The certificates HAProxy serves, kept as files under one directory (`<data_dir>/tls/`).

    Methods are blocking (file I/O, key generation in about a millisecond); call them from a
    thread (`asyncio.to_thread`) in async code. A lock makes the CA and issued leaves safe to
    ask for from several threads. `now` defaults to the wall clock; tests pass it.
    """

    def __init__(
        self,
        directory: Path,
        *,
        leaf_validity: timedelta = LEAF_VALIDITY,
        renew_before: timedelta = RENEW_BEFORE,
    ) -> None:
        self.directory = directory
        self._leaf_validity = leaf_validity
        self._renew_before = renew_before
        self._lock = threading.RLock()
        self._authority: _Authority | None = None

    @property
    def crt_list_path(self) -> Path:
        return self.directory / "crt-list.txt"

    # --- the local CA ---------------------------------------------------------------------------

    def ca_certificate_pem(self, *, now: datetime | None = None) -> str:
        """The local CA's certificate, made on first use: give it to clients to trust issued leaves."""
        return self._ca(_utc(now)).certificate.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, domain_names: Sequence[str], *, now: datetime | None = None) -> IssuedCertificate:
        """Sign a new leaf for `domain_names` (wildcards such as `*.default.localhost` allowed) and
        write it with its key, replacing any earlier one for the same names."""
        names = _dns_names(domain_names)
        with self._lock:
            return self._issue(names, _utc(now))

    def ensure_issued(self, domain_names: Sequence[str], now: datetime | None = None) -> IssuedCertificate:
        """The stored leaf for `domain_names` if it is signed by the current CA and has at least
        `renew_before` left at `now`; otherwise a new one. Safe to call on every reconcile: the
        file only changes when a leaf is (re)issued, and then `fingerprint` changes too."""
        names = _dns_names(domain_names)
        at = _utc(now)
        with self._lock:
            authority = self._ca(at)
            path = self._issued_path(names)
            leaf = _read_leaf(path)
            if leaf is not None and self._still_good(leaf, names, authority, at):
                return _issued(leaf, path)
            return self._issue(names, at)

    def default_certificate(self, *, now: datetime | None = None) -> Path:
        """The bundle HAProxy serves when no SNI name matches; it needs one to start the listener."""
        return self.ensure_issued([DEFAULT_NAME], now).path

    # --- uploaded certificates ------------------------------------------------------------------

    def put_upload(self, name: str, cert_pem: str, key_pem: str, *, now: datetime) -> UploadedCertificate:
        """Validate a user's certificate and key (see `validate_upload`) and store them as one bundle."""
        uploaded = validate_upload(cert_pem, key_pem, now=now)
        # Both parsed above; re-encoding them gives HAProxy one canonical form (PKCS#8 key, no
        # stray text between blocks) whatever the user pasted.
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
        bundle = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain) + _key_pem(key)
        return replace(uploaded, path=self._write_bundle(self._upload_path(name), bundle))

    def put(self, name: str, bundle_pem: str) -> Path:
        """Write `certs/<name>.pem` as given (chain then key, as HAProxy reads it), mode 0600.

        It checks nothing about the bundle: user input goes through `put_upload`."""
        return self._write_bundle(self._upload_path(name), bundle_pem.encode())

    def remove(self, name: str) -> None:
        """Delete an uploaded bundle; removing one that is not there is not an error."""
        self._upload_path(name).unlink(missing_ok=True)

    # --- what HAProxy reads ---------------------------------------------------------------------

    def write_crt_list(self, entries: Iterable[tuple[Path, Sequence[str]]]) -> Path:
        """Write the crt-list: one line per bundle with the SNI names it answers, sorted, so the
        same entries always give the same bytes (the LB manager reloads only when bytes change).

        An entry with no names answers for the names in its certificate. A name may appear in
        one entry only: HAProxy would pick one of them silently, so the caller must decide."""
        owners: dict[str, Path] = {}
        lines: list[str] = []
        for path, sni in entries:
            location = str(path.absolute())
            if any(c.isspace() for c in location):
                # crt-list fields are separated by blanks; HAProxy 2.6 has no quoting for them.
                raise ValueError(f"a crt-list path cannot contain blanks: {location!r}")
            names = sorted(set(_dns_names(sni, allow_empty=True)))
            for sni_name in names:
                if sni_name in owners and owners[sni_name] != path:
                    raise ValueError(f"{sni_name} is listed for both {owners[sni_name]} and {path}")
                owners[sni_name] = path
            lines.append(" ".join([location, f"[alpn {ALPN}]", *names]))
        text = "".join(f"{line}\n" for line in sorted(lines))
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomic(self.crt_list_path, text.encode(), mode=0o644)
        return self.crt_list_path

    def tls(self, entries: Iterable[tuple[Path, Sequence[str]]], *, now: datetime | None = None) -> model.Tls:
        """The `Tls` part of `LbConfig`: the crt-list for `entries` and the default certificate."""
        return model.Tls(crt_list=self.write_crt_list(entries), default_certificate=self.default_certificate(now=now))

    # --- internals ------------------------------------------------------------------------------

    def _ca(self, now: datetime) -> _Authority:
        with self._lock:
            if self._authority is None:
                self._authority = self._load_or_create_ca(now)
            return self._authority

    def _load_or_create_ca(self, now: datetime) -> _Authority:
        ca_dir = self.directory / "ca"
        key_path, cert_path = ca_dir / "ca.key", ca_dir / "ca.pem"
        # The key is written first: a crash between the two writes leaves a key without a
        # certificate, which nobody can have trusted yet, so a new CA is made over it.
        if cert_path.exists():
            try:
                certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
                # Users trust this CA; replacing it silently would break every client that does.
                raise DkosError(
                    f"the local CA in {ca_dir} cannot be read ({exc}); restore it, or remove the "
                    "directory to make a new CA (clients must then trust the new one)"
                ) from exc
            if not isinstance(key, ec.EllipticCurvePrivateKey) or _public_der(key.public_key()) != _public_der(
                certificate.public_key()
            ):
                raise DkosError(
                    f"the local CA key in {key_path} does not match {cert_path}; restore them, or remove "
                    f"{ca_dir} to make a new CA (clients must then trust the new one)"
                )
            return _Authority(certificate, key)

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dkos local CA {secrets.token_hex(4)}")])
        start = now - BACKDATE
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + CA_VALIDITY)
            # path_length=0: the CA signs leaves only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomic(key_path, _key_pem(key), mode=0o600)
        _write_atomic(cert_path, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return _Authority(certificate, key)

    def _issue(self, names: tuple[str, ...], now: datetime) -> IssuedCertificate:
        authority = self._ca(now)
        key = ec.generate_private_key(ec.SECP256R1())
        # A leaf cannot outlive its CA: clients would reject it from that day anyway.
        not_after = min(now + self._leaf_validity, authority.certificate.not_valid_after_utc)
        # A common name is at most 64 characters; without one, RFC 5280 wants the SAN critical.
        subject = (
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]) if len(names[0]) <= 64 else x509.Name([])
        )
        ca_public = authority.key.public_key()
        leaf = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(authority.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=len(subject) == 0)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False)
            .sign(authority.key, hashes.SHA256())
        )
        # The CA is not in the bundle: clients that trust it have it, and others would not
        # trust a self-signed root sent by the server anyway.
        path = self._write_bundle(
            self._issued_path(names), leaf.public_bytes(serialization.Encoding.PEM) + _key_pem(key)
        )
        return _issued(leaf, path)

    def _still_good(self, leaf: x509.Certificate, names: tuple[str, ...], authority: _Authority, now: datetime) -> bool:
        if set(_names_of(leaf)) != set(names) or not leaf.not_valid_before_utc <= now:
            return False
        try:
            # A new CA (its files were removed) makes every leaf of the old one useless.
            leaf.verify_directly_issued_by(authority.certificate)
        except (ValueError, TypeError, InvalidSignature):
            return False
        remaining = leaf.not_valid_after_utc - now
        # Near the CA's own end a new leaf would end on the same day: keep the old one rather
        # than reissue on every call.
        return remaining >= self._renew_before or leaf.not_valid_after_utc >= authority.certificate.not_valid_after_utc

    def _issued_path(self, names: tuple[str, ...]) -> Path:
        # Derived from the set of names, so the same names always land in the same file; the
        # first name keeps it readable, the hash keeps different sets apart.
        ordered = sorted(names)
        digest = hashlib.sha256("\n".join(ordered).encode()).hexdigest()[:12]
        readable = ordered[0].replace("*", "_")[:64]
        return self.directory / "issued" / f"{readable}-{digest}.pem"

    def _upload_path(self, name: str) -> Path:
        if not _BUNDLE_NAME.fullmatch(name):
            # The name becomes a file name: no separators, no leading dot, nothing to escape.
            raise InvalidInput(
                [FieldProblem("name", "use 1 to 128 of a-z, 0-9, '.', '_', '-', starting with a letter or digit")]
            )
        return self.directory / "certs" / f"{name}.pem"

    def _write_bundle(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_atomic(path, data, mode=0o600)
        return path


# --- pure helpers -------------------------------------------------------------------------------


def _utc(now: datetime | None) -> datetime:
    if now is None:
        now = datetime.now(UTC)
    if now.tzinfo is None:
        # A naive time could be local or UTC; guessing would shift validity by hours.
        raise ValueError("now must be timezone-aware")
    # X.509 times have whole seconds; dropping the rest makes stored and computed times compare equal.
    return now.astimezone(UTC).replace(microsecond=0)


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d} at {moment:%H:%M} UTC"


def _dns_names(names: Iterable[str], *, allow_empty: bool = False) -> tuple[str, ...]:
    """Lower-cased, deduplicated, in the given order; a name that no client could match is refused."""
    result: list[str] = []
    problems: list[FieldProblem] = []
    for raw in names:
        name = raw.strip().lower().rstrip(".")
        reason = _dns_name_problem(name)
        if reason:
            problems.append(FieldProblem("domains", f"{raw!r}: {reason}"))
        elif name not in result:
            result.append(name)
    if not result and not problems and not allow_empty:
        problems.append(FieldProblem("domains", "at least one domain name is needed"))
    if problems:
        raise InvalidInput(problems)
    return tuple(result)


def _dns_name_problem(name: str) -> str | None:
    if not name.isascii():
        return "use the ASCII (xn--) form of an international name"
    if not name or len(name) > 253:
        return "a domain name has 1 to 253 characters"
    labels = name.split(".")
    if labels[0] == "*":
        labels = labels[1:]
        # OpenSSL, and so curl and Python, will not match `*.localhost` or `*.com`.
        if len(labels) < 2:
            return "a wildcard needs at least two labels after '*.'"
    if not all(_DNS_LABEL.fullmatch(label) for label in labels):
        return (
            "labels are 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'; '*' only as a whole first label"
        )
    return None


def _parse_chain(cert_pem: str, problems: list[FieldProblem]) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
    except ValueError:
        problems.append(FieldProblem("certificate", "not a PEM certificate"))
        return []
    for position, (child, parent) in enumerate(itertools.pairwise(chain), start=1):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            problems.append(
                FieldProblem(
                    "certificate",
                    f"certificate {position + 1} in the chain did not sign certificate {position}: "
                    "put the leaf first, then each intermediate in order",
                )
            )
            break
    return chain


def _parse_key(key_pem: str, problems: list[FieldProblem]) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None:
    data = key_pem.encode()
    # Checked before parsing: OpenSSL's error for an encrypted key without a password is unclear.
    if b"ENCRYPTED PRIVATE KEY" in data or b"Proc-Type: 4,ENCRYPTED" in data:
        problems.append(FieldProblem("key", "encrypted private keys are not supported"))
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        problems.append(FieldProblem("key", "encrypted private keys are not supported"))
        return None
    except (ValueError, UnsupportedAlgorithm):
        problems.append(FieldProblem("key", "not a PEM private key"))
        return None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            problems.append(FieldProblem("key", f"an RSA key of {key.key_size} bits is too weak; use ≥ {MIN_RSA_BITS}"))
            return None
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name not in EC_CURVES:
            problems.append(FieldProblem("key", f"the EC curve {key.curve.name} is not supported; use P-256 or P-384"))
            return None
        return key
    problems.append(FieldProblem("key", "only RSA and EC (ECDSA) keys are supported"))
    return None


def _names_of(leaf: x509.Certificate) -> tuple[str, ...]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    names = san.get_values_for_type(x509.DNSName) if san is not None else []
    if not names:
        # Clients ignore the common name when a SAN exists, so it only counts without one.
        names = [str(a.value) for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(dict.fromkeys(n.lower() for n in names))


def _issued(leaf: x509.Certificate, path: Path) -> IssuedCertificate:
    return IssuedCertificate(
        names=_names_of(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        fingerprint=_fingerprint(leaf),
        issuer=leaf.issuer.rfc4514_string(),
        path=path,
    )


def _read_leaf(path: Path) -> x509.Certificate | None:
    """The first certificate of a bundle we wrote, or None if there is none to reuse."""
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError):
        return None


def _fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def _public_der(key: object) -> bytes:
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        # Other key types never match: `_parse_key` only lets RSA and EC keys through.
        return b""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_pem(key: object) -> bytes:
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise TypeError(f"unexpected key type {type(key).__name__}")
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Replace `path` with `data` in one rename; a reader sees the old file or the new one, whole."""
    try:
        if path.read_bytes() == data and path.stat().st_mode & 0o777 == mode:
            return
    except FileNotFoundError:
        pass
    # mkstemp creates the file 0600, so a key is never readable by others, not even briefly.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

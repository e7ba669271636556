"""Secure channels: TLS, mutual TLS and auth metadata, with certificates made by the test."""
from __future__ import annotations

import datetime
import ipaddress
import json
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from test_generator import read_rows, run_fastload


def _issue(subject: str, issuer_key, issuer_name, key, is_ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if not is_ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        ), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key) -> tuple[str, str]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """A CA, a server and a client certificate it signed, and an unrelated CA."""
    root = tmp_path_factory.mktemp("pki")
    files = {}
    for ca_name in ("ca", "other_ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(ca_name, key, None, key, is_ca=True)
        files[ca_name] = _write(root / ca_name, cert, key)
        if ca_name == "ca":
            ca_key, ca_cert = key, cert
    for leaf in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        files[leaf] = _write(root / leaf, _issue(leaf, ca_key, ca_cert.subject, key, False), key)
    return files


def test_tls_run_with_auth_metadata_succeeds(tmp_path, start_scheduler, pki):
    scheduler = start_scheduler("--gpus", "16", "--tls-cert", pki["server"][0],
                                "--tls-key", pki["server"][1], "--auth-token", "s3cret")
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", scheduler.address, "--tls",
                                  "--ca-cert", pki["ca"][0], "--metadata",
                                  "authorization=Bearer s3cret", "--total-qps", "50",
                                  "--duration-ms", "1000")
    assert proc.returncode == 0, proc.stderr
    assert {r["status"] for r in read_rows(csv_path)} == {"OK"}
    # TLS goes over grpcio (the h2 transport is cleartext), without being asked.
    assert json.loads(csv_path.with_suffix(".json").read_text())["transport"] == "grpcio"


def test_tls_over_the_h2_transport_is_refused_before_traffic(tmp_path, pki):
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", "127.0.0.1:1", "--tls",
                                  "--ca-cert", pki["ca"][0], "--transport", "h2")
    assert proc.returncode == 2 and not csv_path.exists()
    assert "--transport h2 speaks cleartext HTTP/2 only" in proc.stderr


@pytest.mark.parametrize("token, statuses, code", [("s3cret", {"OK"}, 0),
                                                  ("wrong", {"UNAUTHENTICATED"}, 1)])
def test_auth_metadata_over_cleartext_h2(tmp_path, start_scheduler, token, statuses, code):
    scheduler = start_scheduler("--gpus", "16", "--auth-token", "s3cret")
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", scheduler.address,
                                  "--transport", "h2", "--metadata",
                                  f"authorization=Bearer {token}", "--total-qps", "50",
                                  "--duration-ms", "1000")
    assert proc.returncode == code, proc.stderr
    assert {r["status"] for r in read_rows(csv_path)} == statuses


def test_wrong_auth_metadata_is_recorded_as_unauthenticated(tmp_path, start_scheduler, pki):
    scheduler = start_scheduler("--tls-cert", pki["server"][0], "--tls-key", pki["server"][1],
                                "--auth-token", "s3cret")
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", scheduler.address, "--tls",
                                  "--ca-cert", pki["ca"][0], "--metadata",
                                  "authorization=Bearer wrong", "--total-qps", "50",
                                  "--duration-ms", "1000")
    assert proc.returncode == 1
    assert {r["status"] for r in read_rows(csv_path)} == {"UNAUTHENTICATED"}


def test_mutual_tls_needs_the_client_certificate(tmp_path, start_scheduler, pki):
    scheduler = start_scheduler("--gpus", "16", "--tls-cert", pki["server"][0],
                                "--tls-key", pki["server"][1], "--tls-client-ca", pki["ca"][0])
    common = ("--scheduler-url", scheduler.address, "--tls", "--ca-cert", pki["ca"][0],
              "--total-qps", "50", "--duration-ms", "1000")
    proc, csv_path = run_fastload(tmp_path / "with", *common, "--client-cert", pki["client"][0],
                                  "--client-key", pki["client"][1])
    assert proc.returncode == 0, proc.stderr
    assert {r["status"] for r in read_rows(csv_path)} == {"OK"}

    proc, csv_path = run_fastload(tmp_path / "without", *common, timeout_s=30)
    assert proc.returncode == 3 and not csv_path.exists()


def test_wrong_ca_fails_fast_with_a_clear_message(tmp_path, start_scheduler, pki):
    scheduler = start_scheduler("--tls-cert", pki["server"][0], "--tls-key", pki["server"][1])
    started = time.monotonic()
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", scheduler.address, "--tls",
                                  "--ca-cert", pki["other_ca"][0], timeout_s=30)
    assert proc.returncode == 3
    assert time.monotonic() - started < 15
    # gRPC core logs the handshake's own reason; fastload's verdict is one line, the last.
    ours = [line for line in proc.stderr.splitlines() if line.startswith("fastload:")]
    assert len(ours) == 1 and proc.stderr.strip().splitlines()[-1] == ours[0]
    assert "TLS handshake failed" in ours[0] and "--ca-cert" in ours[0]
    assert not csv_path.exists()

"""A secured Temporal for tests: a test CA with server and client certificates, and a TLS-terminating
TCP proxy in front of the plaintext dev server that can require a client certificate (mTLS, as a
secured cluster or Temporal Cloud does) and records the HTTP/2 request headers it forwards (to see the
API key's `authorization` header on the wire)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    """PEM files of a throw-away CA, a server certificate for localhost / 127.0.0.1, and a client certificate."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_cert: Path
    """A CA that signed nothing here (a server with it is not trusted)."""


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey | None, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common_name: str,
          server: bool) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
               .add_extension(x509.ExtendedKeyUsage(
                   [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_pki(directory: Path) -> Pki:
    ca_key, ca_cert = _ca("openvle-moodle-sync test CA")
    _write(directory / "ca.pem", None, ca_cert)
    _write(directory / "server.pem", *_leaf(ca_key, ca_cert, "localhost", server=True))
    _write(directory / "client.pem", *_leaf(ca_key, ca_cert, "openvle-moodle-sync worker", server=False))
    _write(directory / "other-ca.pem", None, _ca("some other CA")[1])
    return Pki(ca_cert=directory / "ca.pem", server_cert=directory / "server.pem", server_key=directory / "server.key",
               client_cert=directory / "client.pem", client_key=directory / "client.key",
               other_ca_cert=directory / "other-ca.pem")


@dataclass
class TlsProxy:
    """Listens on 127.0.0.1 with TLS (ALPN "h2", which gRPC needs) and pipes each connection to `upstream`."""

    upstream: str
    pki: Pki
    require_client_cert: bool
    address: str = ""
    requests: list[dict[str, str]] = field(default_factory=list)
    """The headers of every HTTP/2 request forwarded (pseudo-headers such as :path included)."""
    _open: set[asyncio.StreamWriter] = field(default_factory=set)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        context.set_alpn_protocols(["h2"])
        if self.require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.pki.ca_cert)
        return context

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sniff: bool) -> None:
        sniffer: h2.connection.H2Connection | None = None
        if sniff:
            sniffer = h2.connection.H2Connection(h2.config.H2Configuration(
                client_side=False, header_encoding="utf-8", validate_inbound_headers=False))
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
                if sniffer is not None:
                    try:
                        self._record(sniffer, data)
                    except Exception:  # a passive reader: it never changes what is forwarded
                        sniffer = None
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def _record(self, sniffer: h2.connection.H2Connection, data: bytes) -> None:
        for event in sniffer.receive_data(data):
            if isinstance(event, h2.events.RequestReceived) and event.headers:
                self.requests.append({str(k): str(v) for k, v in event.headers})
            elif isinstance(event, h2.events.DataReceived):
                # Keep the reader's own flow-control window open; its replies are never sent.
                sniffer.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        sniffer.data_to_send()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        host, port = self.upstream.rsplit(":", 1)
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        self._open |= {client_writer, server_writer}
        try:
            await asyncio.gather(self._pipe(client_reader, server_writer, sniff=True),
                                 self._pipe(server_reader, client_writer, sniff=False))
        finally:
            self._open -= {client_writer, server_writer}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TlsProxy]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.server_context())
        self.address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
        try:
            yield self
        finally:
            server.close()
            # Clients outlive the proxy (the SDK keeps its connections): end their pipes, so no task is left.
            for writer in list(self._open):
                writer.close()
            for _ in range(100):
                if not self._open:
                    break
                await asyncio.sleep(0.01)

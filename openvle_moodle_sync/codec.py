"""Encryption of workflow payloads (inputs, results, signals, queries, memos) with AES-256-GCM.

Off by default. Set ``PAYLOAD_ENCRYPTION_KEY`` (base64 of 32 random bytes) on the worker and on every
client (starter, CLI, backend) and Temporal stores only ciphertext: participant names and emails never
reach the server in the clear. Make a key with::

    python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"

An encrypted payload carries ``encoding: binary/encrypted`` and ``encryption-key-id`` (a fingerprint of
the key, not the key) in its metadata; its data is the 12-byte nonce followed by the AES-GCM ciphertext
of the whole original payload (metadata included). Payloads that are not encrypted decode unchanged, so
histories written before the key was set stay readable. To read encrypted payloads in the Temporal Web
UI, run ``python codec_server.py`` (see there).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import zlib
from collections.abc import Iterable, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from openvle_moodle_sync.settings import ConfigError

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_VARIABLE = "PAYLOAD_ENCRYPTION_KEY"
MAKE_KEY = 'python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"'
_NONCE_BYTES = 12


class InvalidKeyError(ConfigError, ValueError):
    """PAYLOAD_ENCRYPTION_KEY is not the base64 of 32 bytes; the message says how to make one."""


class DecryptionError(ValueError):
    """An encrypted payload that this codec cannot decrypt (another key, or altered data)."""


def key_id(key: bytes) -> str:
    """A short fingerprint of the key that names it in payload metadata (the key cannot be derived from it)."""
    return hashlib.sha256(b"openvle-moodle-sync payload key\0" + key).hexdigest()[:16]


def parse_key(value: str) -> bytes:
    """The 32 key bytes of a PAYLOAD_ENCRYPTION_KEY value, or `InvalidKeyError` naming the fix."""
    text = value.strip()
    problem = ""
    key = b""
    if not text:
        problem = "is empty"
    else:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            problem = "is not valid base64"
        if not problem and len(key) != 32:
            problem = f"decodes to {len(key)} bytes, not 32"
    if problem:
        raise InvalidKeyError(
            f"{KEY_VARIABLE} {problem}: it must be the base64 of 32 random bytes (an AES-256 key). "
            f"Make one with:  {MAKE_KEY}  and set the same value on the worker, the starter and the codec "
            f"server, or unset {KEY_VARIABLE} to store payloads unencrypted."
        )
    return key


def generate_key() -> str:
    """A new PAYLOAD_ENCRYPTION_KEY value."""
    return base64.b64encode(os.urandom(32)).decode()


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec. Encrypts with the first key; decrypts with any of the keys (rotation)."""

    def __init__(self, key: bytes, *, old_keys: Iterable[bytes] = ()) -> None:
        for k in (key, *old_keys):
            if len(k) != 32:
                raise InvalidKeyError(f"an AES-256 key has 32 bytes, not {len(k)}; make one with: {MAKE_KEY}")
        self.key_id = key_id(key)
        self._encryptor = AESGCM(key)
        self._decryptors = {key_id(k): AESGCM(k) for k in (*old_keys, key)}

    @classmethod
    def from_key(cls, value: str, *, old_keys: Iterable[str] = ()) -> EncryptionCodec:
        """The codec of a PAYLOAD_ENCRYPTION_KEY value (base64 of 32 bytes); `InvalidKeyError` otherwise."""
        return cls(parse_key(value), old_keys=[parse_key(v) for v in old_keys])

    def __repr__(self) -> str:  # never shows the key
        return f"EncryptionCodec(key_id={self.key_id!r})"

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._encryptor.encrypt(nonce, payload.SerializeToString(), ENCODING)
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: self.key_id.encode()},
            data=nonce + sealed,
        )

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        kid = payload.metadata.get(KEY_ID_METADATA, b"").decode("ascii", "replace")
        aes = self._decryptors.get(kid)
        if aes is None:
            raise DecryptionError(
                f"payload was encrypted with key {kid!r}, but {KEY_VARIABLE} is key {self.key_id!r}; "
                f"set {KEY_VARIABLE} to the key the payload was written with"
            )
        data = payload.data
        try:
            plain = aes.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], ENCODING)
        except InvalidTag:
            raise DecryptionError(f"encrypted payload (key {kid!r}) fails authentication: it was altered") from None
        return Payload.FromString(plain)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


COMPRESSED = b"binary/zlib"
COMPRESS_ABOVE = 128 * 1024
"""Payloads larger than this are compressed; smaller ones stay readable in the Temporal UI as they are."""


class CompressionCodec(PayloadCodec):
    """zlib for large payloads: the participant list of a big event (about 150 bytes a person) would
    pass Temporal's 2 MB payload limit at some 13,000 people; compressed it stays far below."""

    def __init__(self, threshold: int = COMPRESS_ABOVE) -> None:
        self.threshold = threshold

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            raw = p.SerializeToString()
            out.append(Payload(metadata={"encoding": COMPRESSED}, data=zlib.compress(raw, 6))
                       if len(raw) > self.threshold else p)
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [Payload.FromString(zlib.decompress(p.data)) if p.metadata.get("encoding") == COMPRESSED else p
                for p in payloads]


class CodecChain(PayloadCodec):
    """Codecs applied in order on encode (compress, then encrypt) and in reverse on decode."""

    def __init__(self, *codecs: PayloadCodec) -> None:
        self.codecs = codecs

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        result = list(payloads)
        for codec in self.codecs:
            result = await codec.encode(result)
        return result

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        result = list(payloads)
        for codec in reversed(self.codecs):
            result = await codec.decode(result)
        return result


def payload_codec(encryption_key: str | None) -> PayloadCodec:
    """The codec of this service's payloads: large ones compressed, all encrypted when a key is set."""
    if encryption_key is None:
        return CompressionCodec()
    return CodecChain(CompressionCodec(), EncryptionCodec.from_key(encryption_key))

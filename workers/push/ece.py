"""Web Push message encryption (RFC 8291 over RFC 8188 ``aes128gcm``), one record, with the standard library's HMAC
and ``cryptography``'s ECDH and AES-GCM.

Every message gets a fresh ephemeral P-256 key and salt, as RFC 8291 requires: the key generation and the ECDH
agreement with the subscription's key are the floor of a Web Push send's cost (measured in docs/benchmarks.md);
the HKDF steps are four HMAC-SHA-256 calls. ``http_ece`` does the same with more Python around each step.
"""

from __future__ import annotations

import hmac
import os
import struct

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

RECORD_SIZE = 4096
_CURVE = ec.SECP256R1()
_ECDH = ec.ECDH()


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def encrypt(plaintext: bytes, ua_public: bytes, auth_secret: bytes) -> bytes:
    """The ``aes128gcm`` body for the subscription's ``p256dh`` (``ua_public``, 65 bytes) and ``auth`` secret."""
    if len(plaintext) + 17 > RECORD_SIZE:
        raise ValueError("the plaintext does not fit one record")
    key = ec.generate_private_key(_CURVE)
    as_public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    shared = key.exchange(_ECDH, ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, ua_public))
    # RFC 8291 §3.3-3.4: IKM = HKDF(auth_secret, ECDH secret, "WebPush: info" 0x00 ua_public as_public, 32)
    ikm = _hmac(_hmac(auth_secret, shared), b"WebPush: info\x00" + ua_public + as_public + b"\x01")
    salt = os.urandom(16)
    prk = _hmac(salt, ikm)  # RFC 8188 §2.2-2.3: the content-encryption key and nonce
    cek = _hmac(prk, b"Content-Encoding: aes128gcm\x00\x01")[:16]
    nonce = _hmac(prk, b"Content-Encoding: nonce\x00\x01")[:12]
    ciphertext = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)  # 0x02: the last (only) record
    return salt + struct.pack("!IB", RECORD_SIZE, len(as_public)) + as_public + ciphertext

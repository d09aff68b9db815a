"""Face templates encrypted at rest: Fernet (AES-128-CBC + HMAC-SHA256) with a key derived
from ``settings.template_key`` by HKDF-SHA256."""

from __future__ import annotations

import base64

import numpy as np
import numpy.typing as npt
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ringwatch.errors import ConfigError

_INFO = b"ringwatch hub face templates v1"
_SALT = b"ringwatch-template-key"
_SNAPSHOT_INFO = b"ringwatch hub index snapshot v1"


class TemplateCipher:
    """Encrypts embeddings and face crops; one instance per hub."""

    def __init__(self, secret: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(
            secret.encode()
        )
        self._fernet = Fernet(base64.urlsafe_b64encode(key))
        self.snapshot_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_SNAPSHOT_INFO
        ).derive(secret.encode())  # AES-256-GCM key of the saved 1:N index (hub/ann.py)

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise ConfigError(
                "a face template cannot be decrypted: template_key differs from the key it "
                "was enrolled with"
            ) from None

    def encrypt_embedding(self, vector: npt.NDArray[np.float32]) -> bytes:
        return self.encrypt(np.ascontiguousarray(vector, dtype="<f4").tobytes())

    def decrypt_embedding(self, token: bytes) -> npt.NDArray[np.float32]:
        return np.frombuffer(self.decrypt(token), dtype="<f4").astype(np.float32)

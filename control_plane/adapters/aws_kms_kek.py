"""Key-encryption keys in AWS KMS: data keys from ``GenerateDataKey``, opened by ``Decrypt``.

``PLINTH_SECRETS_KMS_KEY_ID`` names the key (an alias such as ``alias/plinth-secrets`` or an
ARN). Rotation: KMS's automatic rotation keeps the key id (old ciphertexts still decrypt with
no change); a move to another key is an alias update, after which new writes use the new key,
the key ARN stored beside each value still decrypts the old ones, and a re-wrap moves them.
"""

from __future__ import annotations

from typing import Any

from control_plane.adapters.exceptions import AdapterError
from control_plane.ports.secret_keys import DataKey, SecretKeyError

# Bound into every data key: a ciphertext taken from elsewhere in the account does not decrypt.
ENCRYPTION_CONTEXT = {"plinth": "secret"}


class AwsKmsKeys:
    def __init__(self, key_id: str, client: Any) -> None:
        self._key_id = key_id
        self._kms = client

    @classmethod
    def from_settings(cls, settings: Any) -> AwsKmsKeys:
        import boto3

        if not settings.secrets_kms_key_id:
            raise AdapterError("PLINTH_SECRETS_KEK=aws-kms needs PLINTH_SECRETS_KMS_KEY_ID")
        return cls(
            settings.secrets_kms_key_id, boto3.client("kms", region_name=settings.aws_region)
        )

    def current_kek_id(self) -> str:
        reply = self._call("DescribeKey", self._kms.describe_key, KeyId=self._key_id)
        return str(reply["KeyMetadata"]["Arn"])

    def new_data_key(self) -> DataKey:
        reply = self._call(
            "GenerateDataKey",
            self._kms.generate_data_key,
            KeyId=self._key_id,
            KeySpec="AES_256",
            EncryptionContext=ENCRYPTION_CONTEXT,
        )
        return DataKey(
            plaintext=bytes(reply["Plaintext"]),
            wrapped=bytes(reply["CiphertextBlob"]),
            kek_id=str(reply["KeyId"]),
        )

    def unwrap(self, wrapped: bytes, kek_id: str) -> bytes:
        reply = self._call(
            "Decrypt",
            self._kms.decrypt,
            CiphertextBlob=wrapped,
            KeyId=kek_id,
            EncryptionContext=ENCRYPTION_CONTEXT,
        )
        return bytes(reply["Plaintext"])

    def _call(self, action: str, method: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise SecretKeyError(
                f"kms:{action} on {kwargs.get('KeyId')!r} failed: {code}"
            ) from None
        except BotoCoreError as exc:
            raise SecretKeyError(f"kms:{action} failed: {type(exc).__name__}") from None

"""One credential from AWS Secrets Manager, read once where it is needed (never logged).

The async worker Lambda gets the ARN of its API key's secret (``PLINTH_ASYNC_API_KEY_SECRET_ARN``)
rather than the key itself, so the key is in no function's environment.
"""

from __future__ import annotations

from control_plane.adapters.exceptions import AdapterError


def read_secret_string(secret_id: str, region: str | None) -> str:
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("secretsmanager", region_name=region)
    try:
        reply = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise AdapterError(f"secretsmanager: reading {secret_id!r} failed: {code}") from None
    value = reply.get("SecretString")
    if not value:
        raise AdapterError(f"secretsmanager: {secret_id!r} has no string value yet")
    return str(value)

"""Settings of a Lambda sandbox: the environment, plus what Secrets Manager holds.

``PLINTH_INTERNAL_TOKEN_SECRET_ID`` names the secret holding the gateways' internal token (the
stack creates it; its value never sits in the function's environment, where the console and
``GetFunctionConfiguration`` would show it). It is read once, when the sandbox builds its app.
"""

from __future__ import annotations

import dataclasses
import os

from control_plane.settings import Settings

INTERNAL_TOKEN_SECRET_ENV = "PLINTH_INTERNAL_TOKEN_SECRET_ID"


def load_settings() -> Settings:
    settings = Settings.from_env()
    secret_id = os.environ.get(INTERNAL_TOKEN_SECRET_ENV)
    if not secret_id or settings.internal_token:
        return settings
    import boto3

    client = boto3.client("secretsmanager", region_name=settings.aws_region)
    token = client.get_secret_value(SecretId=secret_id)["SecretString"]
    return dataclasses.replace(settings, internal_token=token)

"""``python -m control_plane.secret_keys {rotate,rewrap}``: rotate the KEK, re-wrap the secrets.

Reads the same ``PLINTH_*`` settings as the control plane. ``rotate`` adds a version to the
local key file (``PLINTH_SECRETS_KEK=local``; for KMS, point the alias at a new key or let
KMS rotate it) and re-wraps; ``rewrap`` seals every stored secret under the current KEK:
plaintext records from before encryption and values under older versions. Prints secret
names and counts only, never a value.
"""

from __future__ import annotations

import argparse
import sys

from control_plane.exceptions import ControlPlaneError
from control_plane.settings import Settings
from control_plane.wiring import Platform


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m control_plane.secret_keys")
    parser.add_argument("action", choices=("rotate", "rewrap"))
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        platform = Platform(settings)
        try:
            if args.action == "rotate":
                from control_plane.adapters.local_kek import LocalKeyFile

                keys = platform.secret_keys
                if not isinstance(keys, LocalKeyFile):
                    raise ControlPlaneError(
                        f"rotate works on the local key file; with PLINTH_SECRETS_KEK="
                        f"{settings.secrets_kek} rotate the KMS key, then run rewrap"
                    )
                print(f"new key-encryption key: {keys.rotate()}")
            report = platform.secrets.rewrap()
        finally:
            platform.close()
    except ControlPlaneError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(
        f"re-wrapped {len(report.rewrapped)} secret(s) under {report.kek_id}"
        f" ({len(report.already_current)} already under it)"
    )
    for name in report.rewrapped:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

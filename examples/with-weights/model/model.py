"""Reads the files of its ``weights:`` entries in load(); predict reports what it found.

Where the files are: ``$PLINTH_WEIGHTS_MOUNT_ROOT`` + ``mount_location``. In a Kubernetes pod
the root is ``/`` (Truss layout: ``/app/model_cache/...``); on a laptop every replica gets its
own directory and the model server exports its absolute path in that variable.
"""

import hashlib
import os
from pathlib import Path
from typing import Any


def weights_dir(mount_location: str) -> Path:
    return Path(os.environ.get("PLINTH_WEIGHTS_MOUNT_ROOT", "/")) / mount_location.lstrip("/")


class Model:
    def __init__(self, **kwargs: Any) -> None:
        self._config = kwargs.get("config") or {}
        self._files: dict[str, dict[str, Any]] = {}

    def load(self) -> None:
        for entry in self._config.get("weights") or []:
            root = weights_dir(entry["mount_location"])
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                data = path.read_bytes()
                self._files[f"{entry['mount_location']}/{path.relative_to(root).as_posix()}"] = {
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "head": data[:64].decode("utf-8", "replace"),
                }
        if not self._files:
            raise RuntimeError("no weight files found: is the weights: section empty?")

    def predict(self, model_input: dict[str, Any]) -> dict[str, Any]:
        wanted = model_input.get("file") if isinstance(model_input, dict) else None
        if wanted is None:
            return {
                "files": self._files,
                "total_bytes": sum(f["size"] for f in self._files.values()),
            }
        matches = {name: info for name, info in self._files.items() if name.endswith(f"/{wanted}")}
        if not matches:
            raise ValueError(f"no weight file named {wanted!r}; have {sorted(self._files)}")
        return {"files": matches}

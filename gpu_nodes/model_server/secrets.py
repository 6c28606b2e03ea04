"""The ``secrets`` mapping handed to ``Model.__init__`` (Truss semantics).

Only secrets declared under ``secrets:`` in config.yaml can be read. A value comes from the file
``<secrets_dir>/<name>`` (the cluster driver writes them, mode 0600) and falls back to the
non-null value in config.yaml, as Truss does. Values are read on access, never logged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from gpu_nodes.model_server.exceptions import SecretNotFoundError


class SecretsMapping(Mapping[str, str]):
    def __init__(self, declared: Mapping[str, str | None], secrets_dir: Path | None) -> None:
        self._declared = dict(declared)
        self._secrets_dir = secrets_dir

    def __getitem__(self, name: str) -> str:
        if name not in self._declared:
            raise SecretNotFoundError(
                name,
                f"secret '{name}' is not declared in config.yaml; add it under 'secrets:' "
                "and set it with `plinth secrets set`",
            )
        from_file = self._read_file(name)
        if from_file is not None:
            return from_file
        default = self._declared[name]
        if default is not None:
            return str(default)
        raise SecretNotFoundError(
            name,
            f"secret '{name}' is declared in config.yaml but was not provided to this replica; "
            "set it with `plinth secrets set` and redeploy",
        )

    def _read_file(self, name: str) -> str | None:
        if self._secrets_dir is None or "/" in name or name in ("", ".", ".."):
            return None
        path = self._secrets_dir / name
        if not path.is_file():
            return None
        return path.read_text(encoding="utf-8")

    def __iter__(self) -> Iterator[str]:
        return iter(self._declared)

    def __len__(self) -> int:
        return len(self._declared)

    def __contains__(self, name: object) -> bool:
        # "in" answers whether a value is available, so `if "tok" in secrets` is safe to use.
        if not isinstance(name, str) or name not in self._declared:
            return False
        return self._read_file(name) is not None or self._declared[name] is not None

    def __repr__(self) -> str:  # never show values
        return f"SecretsMapping(names={sorted(self._declared)})"

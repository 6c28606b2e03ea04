"""Preflight every stack offline: run each ``stacks/*/Pulumi.<stack>.yaml`` under mocks and
check the policies, before anyone runs ``pulumi up``.

Stacks that read other stacks through ``StackReference`` get the outputs the referenced
stack's own program produces (run first, under mocks), so a reference to a missing stack
or a missing output fails here rather than mid-deployment.

    python -m infra.preflight [STACKS_DIR]
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.offline import OfflineRun, run_stack
from infra.policies import Violation, check

# "<org>/<project>/<stack>", the fully qualified name a StackReference takes.
STACK_REFERENCE = re.compile(r"^[A-Za-z0-9_.-]+/([a-z0-9-]+)/([a-z0-9-]+)$")


def stack_files(stacks_dir: Path) -> list[tuple[str, str]]:
    """(project directory, stack) for every ``Pulumi.<stack>.yaml`` under ``stacks_dir``."""
    return [
        (path.parent.name, path.name.removeprefix("Pulumi.").removesuffix(".yaml"))
        for path in sorted(stacks_dir.glob("*/Pulumi.*.yaml"))
    ]


def referenced_stacks(stacks_dir: Path, project: str, stack: str) -> list[str]:
    """Fully qualified names of the stacks this stack's config points at."""
    doc = yaml.safe_load((stacks_dir / project / f"Pulumi.{stack}.yaml").read_text()) or {}

    def walk(value: Any) -> list[str]:
        if isinstance(value, str):
            match = STACK_REFERENCE.match(value)
            return [value] if match and (stacks_dir / match.group(1)).is_dir() else []
        if isinstance(value, dict):
            return [ref for item in value.values() for ref in walk(item)]
        if isinstance(value, list):
            return [ref for item in value for ref in walk(item)]
        return []

    return walk(doc.get("config") or {})


@dataclass
class StackTree:
    """Runs stacks under mocks, each referenced stack once, memoised by qualified name."""

    stacks_dir: Path

    def __post_init__(self) -> None:
        self._outputs: dict[str, dict[str, Any]] = {}
        self._visiting: set[str] = set()

    def outputs_of(self, qualified_name: str) -> dict[str, Any]:
        if qualified_name not in self._outputs:
            match = STACK_REFERENCE.match(qualified_name)
            if match is None:
                raise ValueError(f"{qualified_name!r} is not org/project/stack")
            if qualified_name in self._visiting:
                raise ValueError(f"stack reference cycle through {qualified_name}")
            self._visiting.add(qualified_name)
            self._outputs[qualified_name] = self.run(*match.groups()).outputs
            self._visiting.discard(qualified_name)
        return self._outputs[qualified_name]

    def references(self, project: str, stack: str) -> dict[str, dict[str, Any]]:
        return {
            ref: self.outputs_of(ref) for ref in referenced_stacks(self.stacks_dir, project, stack)
        }

    def run(self, project: str, stack: str) -> OfflineRun:
        refs = self.references(project, stack)
        return run_stack(self.stacks_dir / project, stack, stack_outputs=refs)


def preflight(stacks_dir: Path) -> dict[tuple[str, str], list[Violation]]:
    tree = StackTree(stacks_dir)
    return {(p, s): check(tree.run(p, s).resources) for p, s in stack_files(stacks_dir)}


def main(argv: list[str]) -> int:
    stacks_dir = Path(argv[0]) if argv else Path("stacks")
    failed = False
    for (project, stack), violations in preflight(stacks_dir).items():
        print(f"{project}/{stack}: {'ok' if not violations else f'{len(violations)} violation(s)'}")
        for violation in violations:
            print(f"  {violation}")
        failed = failed or bool(violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

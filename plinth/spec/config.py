"""Truss-compatible `config.yaml` schema.

Field names and defaults follow Truss's `config.yaml` exactly so an existing Truss package loads
unchanged; Plinth adds one section of its own, `engine`, for the built-in LLM engine and its
vLLM / TensorRT-LLM adapters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

_CPU_PATTERN = re.compile(r"^\d+(\.\d+)?m?$")
_MEMORY_PATTERN = re.compile(r"^(\d+(\.\d+)?)(Ki|Mi|Gi|Ti|Pi|K|k|M|G|T|P)?$")
_MEMORY_UNITS: dict[str, int] = {
    "": 1,
    "K": 1000,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
}
_ACCELERATOR_PATTERN = re.compile(r"^([A-Za-z0-9_\-]+)(?::(\d+))?$")
_PYTHON_VERSION_PATTERN = re.compile(r"^py3\d{1,2}$")


def _scalar_to_str(value: Any) -> Any:
    """YAML reads `cpu: 1` or `FOO: 3` as numbers; Truss treats these as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


class _Section(BaseModel):
    # Unknown keys are reported by the loader (warning, or error when strict) before validation,
    # so validation itself ignores them, as Truss does.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


@dataclass(frozen=True)
class AcceleratorSpec:
    """`resources.accelerator` parsed: "H100:2" -> type "H100", count 2."""

    type: str
    count: int

    def __str__(self) -> str:
        return f"{self.type}:{self.count}" if self.count != 1 else self.type


class Resources(_Section):
    cpu: str = Field(
        default="1", description="CPU cores per replica: '1', '2.5' or millicores '500m'."
    )
    memory: str = Field(default="2Gi", description="Memory per replica: '2Gi', '512Mi'.")
    accelerator: str | None = Field(
        default=None,
        description="GPU type and count, 'TYPE' or 'TYPE:COUNT' (e.g. 'A10G', 'H100:2'). "
        "Setting it implies use_gpu.",
    )
    use_gpu: bool = Field(default=False, description="Whether the replica needs a GPU.")
    node_count: int = Field(
        default=1, ge=1, description="Nodes per replica (multi-node inference)."
    )
    instance_type: str | None = Field(
        default=None, description="Provider instance type (recorded only)."
    )

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _numbers_are_strings(cls, value: Any) -> Any:
        return _scalar_to_str(value)

    @field_validator("cpu")
    @classmethod
    def _check_cpu(cls, value: str) -> str:
        if not _CPU_PATTERN.match(value):
            raise ValueError("must be a number of cores like '1', '2.5' or '500m'")
        return value

    @field_validator("memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        if not _MEMORY_PATTERN.match(value):
            raise ValueError("must be a memory quantity like '2Gi', '512Mi' or '1G'")
        return value

    @field_validator("accelerator")
    @classmethod
    def _check_accelerator(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _ACCELERATOR_PATTERN.match(value)
        if not match or (match.group(2) is not None and int(match.group(2)) < 1):
            raise ValueError("must be 'TYPE' or 'TYPE:COUNT' with COUNT >= 1, e.g. 'H100:2'")
        return value

    @model_validator(mode="after")
    def _accelerator_implies_gpu(self) -> Resources:
        if self.accelerator is not None:
            self.use_gpu = True
        return self

    @property
    def accelerator_spec(self) -> AcceleratorSpec | None:
        """The accelerator as type + count, or None when no accelerator is set."""
        if self.accelerator is None:
            return None
        gpu_type, _, count = self.accelerator.partition(":")
        return AcceleratorSpec(type=gpu_type, count=int(count) if count else 1)

    @property
    def cpu_cores(self) -> float:
        """CPU request in cores ('500m' -> 0.5)."""
        if self.cpu.endswith("m"):
            return float(self.cpu[:-1]) / 1000
        return float(self.cpu)

    @property
    def memory_bytes(self) -> int:
        """Memory request in bytes ('2Gi' -> 2147483648)."""
        match = _MEMORY_PATTERN.match(self.memory)
        if match is None:  # unreachable after validation; kept for type narrowing
            raise ValueError(f"invalid memory quantity {self.memory!r}")
        return int(float(match.group(1)) * _MEMORY_UNITS[match.group(3) or ""])


class Runtime(_Section):
    predict_concurrency: int = Field(
        default=1, ge=1, description="Concurrent predict calls one replica runs at once."
    )
    streaming_read_timeout: int = Field(
        default=60,
        ge=1,
        description="Seconds a streaming response may go without producing a chunk.",
    )
    predict_timeout: int = Field(
        default=600,
        ge=1,
        description="Seconds one predict request may take (waiting for a predict_concurrency "
        "slot included; for a stream, until its first chunk) before the replica answers 504 "
        "(Plinth: Truss has no such key). An async predict is cancelled and frees its slot; a "
        "sync one cannot be stopped and keeps its slot until it returns. Use async_predict for "
        "longer work.",
    )
    enable_tracing_data: bool = Field(
        default=False, description="Record request/response data in traces."
    )
    enable_debug_logs: bool = Field(
        default=False, description="Debug-level logs in the model server."
    )


class WeightsSource(_Section):
    source: str = Field(
        description="Where the weights come from: 'hf://org/repo@rev', 's3://bucket/prefix', "
        "'gs://bucket/prefix', or an 'https://' URL."
    )
    mount_location: str = Field(
        description="Absolute path at which the weights appear inside the replica."
    )
    allow_patterns: list[str] | None = Field(
        default=None, description="Only files matching one of these globs are fetched."
    )
    ignore_patterns: list[str] | None = Field(
        default=None, description="Files matching one of these globs are skipped."
    )
    auth_secret_name: str | None = Field(
        default=None, description="Name of the secret holding credentials for the source."
    )

    @field_validator("source")
    @classmethod
    def _check_source(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError("must be a URI such as 'hf://org/repo', 's3://bucket/prefix'")
        return value

    @field_validator("mount_location")
    @classmethod
    def _check_mount(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


class DockerServer(_Section):
    """Truss's ``docker_server``: the replica runs the user's own HTTP server."""

    start_command: str = Field(
        description="Shell command that starts the server (run with `sh -c` in the package "
        "directory; $PORT holds the port it must listen on)."
    )
    server_port: int = Field(ge=1, le=65535, description="Port the server listens on.")
    predict_endpoint: str = Field(description="Path that `predict` reaches, e.g. '/predict'.")
    readiness_endpoint: str = Field(
        description="Path answering 200 once the server takes traffic, e.g. '/health'."
    )
    liveness_endpoint: str = Field(
        description="Path answering 200 while the server is alive, e.g. '/health'."
    )

    @field_validator("start_command")
    @classmethod
    def _check_command(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("predict_endpoint", "readiness_endpoint", "liveness_endpoint")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be a path starting with '/'")
        return value


class PlacementSpec(_Section):
    """Plinth's own section: where the deployment's replicas may run (multi-cluster)."""

    residency: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9-]{0,31}$",
        description="Only clusters labelled residency=<this> run it or serve its requests "
        "(e.g. 'eu'); a request is never forwarded outside them.",
    )
    regions: list[str] = Field(
        default_factory=list, description="Region lock: only clusters in these regions."
    )
    min_clusters: int = Field(
        default=1, ge=1, le=16, description="Active-active: spread over at least this many."
    )


EngineKind = Literal["builtin", "vllm", "trt_llm"]


class EngineSpec(_Section):
    """Plinth's own section: serve the package with an LLM engine instead of a Model class."""

    kind: EngineKind = Field(
        default="builtin", description="Engine: 'builtin', 'vllm' or 'trt_llm'."
    )
    model_path: str = Field(
        description="Model weights directory (HF layout), relative to the package dir or absolute; "
        "for vllm also a Hugging Face repo id."
    )
    max_model_len: int | None = Field(
        default=None,
        ge=1,
        description="Longest prompt + completion, in tokens (default: the model's).",
    )
    block_size: int = Field(default=16, ge=1, description="Tokens per KV-cache block.")
    num_blocks: int | None = Field(
        default=None, ge=1, description="KV-cache blocks (default: derived from a memory budget)."
    )
    max_num_seqs: int = Field(default=32, ge=1, description="Sequences batched together at most.")
    max_num_batched_tokens: int = Field(
        default=2048, ge=1, description="Token budget per engine step (chunked prefill)."
    )
    dtype: str = Field(
        default="auto",
        description="Weights dtype: 'auto' (float32 on CPU, bfloat16 on CUDA) or a name.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="'auto' picks CUDA when available, else CPU."
    )

    def resolve_model_path(self, package_dir: Path | str) -> Path:
        """The model directory: `model_path` as is when absolute, else under `package_dir`."""
        path = Path(self.model_path)
        return path if path.is_absolute() else Path(package_dir) / path


class TrussConfig(_Section):
    """A package's `config.yaml` (Truss field names and defaults, plus Plinth's `engine`)."""

    model_name: str | None = Field(
        default=None, description="Name of the model (required to push)."
    )
    description: str | None = Field(default=None, description="Free-text description of the model.")
    model_class_name: str = Field(
        default="Model", description="Name of the class in the model file."
    )
    model_module_dir: str = Field(default="model", description="Directory holding the model file.")
    model_class_filename: str = Field(
        default="model.py", description="File defining the model class."
    )
    data_dir: str = Field(
        default="data", description="Directory passed to the model as `data_dir`."
    )
    bundled_packages_dir: str = Field(
        default="packages", description="Directory of extra Python packages put on sys.path."
    )
    external_package_dirs: list[str] = Field(
        default_factory=list, description="Directories outside the package put on sys.path."
    )
    python_version: str = Field(
        default="py311", description="Python of the serving image, e.g. 'py311'."
    )
    requirements: list[str] = Field(
        default_factory=list, description="pip requirements, one specifier per item."
    )
    requirements_file: str | None = Field(
        default=None,
        description="Path of a requirements.txt relative to the package (instead of list).",
    )
    system_packages: list[str] = Field(
        default_factory=list, description="apt packages (recorded; not installed locally)."
    )
    environment_variables: dict[str, str] = Field(
        default_factory=dict, description="Environment variables set in every replica."
    )
    secrets: dict[str, str | None] = Field(
        default_factory=dict,
        description="Secrets the model reads, name -> placeholder; values come from the platform.",
    )
    resources: Resources = Field(
        default_factory=lambda: Resources(), description="Compute per replica."
    )
    runtime: Runtime = Field(default_factory=lambda: Runtime(), description="Serving behaviour.")
    model_metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free-form metadata (example inputs, tags, ...)."
    )
    weights: list[WeightsSource] = Field(
        default_factory=list, description="Weights fetched and mounted before the model loads."
    )
    model_framework: str = Field(default="custom", description="Framework label (recorded only).")
    model_type: str | None = Field(default=None, description="Model type label (recorded only).")
    spec_version: str = Field(default="2.0", description="Truss spec version.")
    apply_library_patches: bool = Field(
        default=True, description="Truss library patches (recorded)."
    )
    build_commands: list[str] = Field(
        default_factory=list, description="Shell commands run at image build (recorded only)."
    )
    base_image: dict[str, Any] | None = Field(
        default=None, description="Custom base image (recorded)."
    )
    docker_server: DockerServer | None = Field(
        default=None,
        description="Run your own HTTP server instead of a Model class (Truss docker_server).",
    )
    model_cache: list[dict[str, Any]] = Field(
        default_factory=list, description="Legacy Truss weights cache entries (recorded)."
    )
    live_reload: bool = Field(default=False, description="Truss live reload (recorded only).")
    examples_filename: str = Field(default="examples.yaml", description="Truss examples file name.")
    trt_llm: dict[str, Any] | None = Field(
        default=None, description="Truss TensorRT-LLM section, passed as-is to the trt_llm adapter."
    )
    engine: EngineSpec | None = Field(
        default=None, description="Serve with an LLM engine instead of a Model class (Plinth)."
    )
    placement: PlacementSpec | None = Field(
        default=None, description="Where replicas may run across clusters (Plinth)."
    )

    @field_validator("python_version", mode="before")
    @classmethod
    def _check_python_version(cls, value: Any) -> Any:
        if isinstance(value, str) and not _PYTHON_VERSION_PATTERN.match(value):
            raise ValueError("must look like 'py311'")
        return value

    @field_validator("environment_variables", mode="before")
    @classmethod
    def _env_values_are_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: _scalar_to_str(item) for key, item in value.items()}
        return value

    @field_validator("requirements")
    @classmethod
    def _check_requirements(cls, value: list[str]) -> list[str]:
        for requirement in value:
            if not requirement.strip():
                raise ValueError("requirement must not be empty")
        return value

    @field_validator("requirements_file")
    @classmethod
    def _requirements_one_way(cls, value: str | None, info: ValidationInfo) -> str | None:
        # `requirements` is declared first, so it is already validated here.
        if value and info.data.get("requirements"):
            raise ValueError("set either 'requirements' or 'requirements_file', not both")
        return value

    @property
    def model_class_path(self) -> Path:
        """Model file relative to the package dir (e.g. model/model.py)."""
        return Path(self.model_module_dir) / self.model_class_filename

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what `plinth push` sends as the deployment's config)."""
        return self.model_dump(mode="json")

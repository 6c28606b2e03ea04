"""The package spec every part of Plinth shares: config.yaml schema, loader, archives."""

from plinth.exceptions import ArchiveError, ConfigError, ConfigWarning
from plinth.spec.archive import ArchiveInfo, create_archive, extract_archive, file_sha256
from plinth.spec.config import (
    AcceleratorSpec,
    EngineSpec,
    Resources,
    Runtime,
    TrussConfig,
    WeightsSource,
)
from plinth.spec.loader import (
    LoadedConfig,
    load_config,
    load_config_with_warnings,
    parse_config_text,
    validate_config_dict,
)

__all__ = [
    "AcceleratorSpec",
    "ArchiveError",
    "ArchiveInfo",
    "ConfigError",
    "ConfigWarning",
    "EngineSpec",
    "LoadedConfig",
    "Resources",
    "Runtime",
    "TrussConfig",
    "WeightsSource",
    "create_archive",
    "extract_archive",
    "file_sha256",
    "load_config",
    "load_config_with_warnings",
    "parse_config_text",
    "validate_config_dict",
]

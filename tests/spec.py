"""Validates responses against the official Mistral OpenAPI spec, with ERRATA.md applied."""

import copy
import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

# The spec and its errata live with the tests (tests/mistral-api/README.md says where from).
SPEC_DIR = Path(os.environ.get("ALIZE_SPEC_DIR", Path(__file__).resolve().parent / "mistral-api"))
SPEC_PATH = SPEC_DIR / "openapi-core.yaml"
# more of the same specification: their schemas join the core's
PARTS = ("openapi-beta.yaml", "openapi-libraries.yaml", "openapi-files.yaml")


@cache
def spec() -> dict[str, Any]:
    if not SPEC_PATH.exists():
        raise FileNotFoundError(f"the official spec is missing from {SPEC_PATH} (ALIZE_SPEC_DIR)")
    data = yaml.safe_load(SPEC_PATH.read_text())
    for part in PARTS:
        more = yaml.safe_load((SPEC_DIR / part).read_text())
        data["paths"].update(more["paths"])
        for name, schema in more["components"]["schemas"].items():
            data["components"]["schemas"].setdefault(name, schema)
    return apply_errata(data)


def apply_errata(data: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    schemas = data["components"]["schemas"]
    # Erratum 1: ChatCompletionResponse requires a `data` field that does not exist.
    for part in schemas["ChatCompletionResponse"]["allOf"]:
        if "required" in part:
            part["required"] = [r for r in part["required"] if r != "data"]
    # Erratum 2: UsageInfo allows extra fields such as prompt_tokens_details.
    schemas["UsageInfo"]["additionalProperties"] = True
    return data


@cache
def _registry() -> Registry:
    resource = Resource.from_contents(spec(), default_specification=DRAFT202012)
    return Registry().with_resource("urn:mistral", resource)


def errors(instance: Any, schema_name: str) -> list[str]:
    validator = Draft202012Validator(
        {"$ref": f"urn:mistral#/components/schemas/{schema_name}"}, registry=_registry()
    )
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def assert_valid(instance: Any, schema_name: str) -> None:
    problems = errors(instance, schema_name)
    assert not problems, f"{schema_name} violates the spec: {problems}"

"""response_format: JSON mode and JSON Schema structured output, enforced by a grammar
the engine samples under (never by hoping the model complies)."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from alize.engine.grammar import UnsupportedSchema, json_object_gbnf, schema_to_gbnf
from alize.errors import InvalidRequest
from alize.protocol.chat import ResponseFormat

PARAM = "response_format"


@lru_cache(maxsize=256)
def _compile(schema_json: str) -> str:
    return schema_to_gbnf(json.loads(schema_json))


def _schema_of(json_schema: dict[str, Any] | None) -> dict[str, Any]:
    if not isinstance(json_schema, dict):
        raise InvalidRequest("response_format of type json_schema needs a json_schema object "
                             "{name, schema, strict}", param=PARAM)
    name, schema = json_schema.get("name"), json_schema.get("schema")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("response_format.json_schema.name is required", param=PARAM)
    if not isinstance(schema, dict):
        raise InvalidRequest("response_format.json_schema.schema must be a JSON Schema object", param=PARAM)
    check_json_schema(schema, "response_format.json_schema.schema", PARAM)
    return schema


def check_json_schema(schema: dict[str, Any], where: str, param: str) -> None:
    """A 400 unless `schema` is a valid JSON Schema (2020-12)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"{where} is not a valid JSON Schema: {exc.message}", param=param) from None


@contextmanager
def grammar_errors(param: str) -> Iterator[None]:
    """Compiling a schema to a grammar: what cannot be enforced becomes a 400 naming it."""
    try:
        yield
    except UnsupportedSchema as exc:
        raise InvalidRequest(str(exc), param=param) from None
    except (ValueError, KeyError, AssertionError, RecursionError, TypeError) as exc:
        raise InvalidRequest(f"the JSON Schema cannot be compiled to a grammar: {exc}", param=param) from None


def compile_schema(schema: dict[str, Any], param: str = PARAM) -> str:
    """The GBNF grammar of a JSON Schema, or a 400 naming what cannot be enforced."""
    with grammar_errors(param):
        return _compile(json.dumps(schema))  # property order is kept: the answer follows it


def response_grammar(response_format: ResponseFormat | None) -> tuple[str | None, str | None]:
    """(grammar the output must follow, instruction to add to the prompt); (None, None)
    for plain text."""
    if response_format is None or response_format.type == "text":
        return None, None
    if response_format.type == "json_object":
        return json_object_gbnf(), "Answer with a single JSON object, and nothing else."
    schema = _schema_of(response_format.json_schema)
    instruction = ("Answer with a single JSON object, and nothing else, that follows this JSON Schema: "
                   + json.dumps(schema, separators=(",", ":")))
    return compile_schema(schema), instruction

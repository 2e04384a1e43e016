"""response_format: JSON mode and JSON Schema structured output, enforced by a grammar
the engine samples under (never by hoping the model complies), and the answer validated
against the schema afterwards for what no grammar expresses (multipleOf, uniqueItems...).

An answer that ends but fails that validation is returned with finish_reason "error"."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from alize.engine.grammar import MAX_DEPTH, UnsupportedSchema, depth, json_object_gbnf, schema_to_gbnf
from alize.errors import InvalidRequest
from alize.protocol.chat import ResponseFormat

PARAM = "response_format"
Check = Callable[[Any], bool]  # whether a parsed answer is valid


@dataclass(frozen=True)
class ResponsePlan:
    grammar: str | None = None  # what the output must follow; None: free text
    instruction: str | None = None  # for the system prompt
    check: Check | None = None  # validates the parsed answer
    schema: tuple[dict[str, Any], bool] | None = None  # the answer's JSON Schema and strictness


@lru_cache(maxsize=256)
def _compile(schema_json: str, strict: bool) -> str:
    return schema_to_gbnf(json.loads(schema_json), strict)


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    schema = json.loads(schema_json)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validator_of(schema: dict[str, Any]) -> Check:
    """Whether a value follows the schema, formats included (as far as jsonschema checks them)."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    return validator.is_valid


def _schema_of(json_schema: dict[str, Any] | None) -> tuple[dict[str, Any], bool]:
    if not isinstance(json_schema, dict):
        raise InvalidRequest("response_format of type json_schema needs a json_schema object "
                             "{name, schema, strict}", param=PARAM)
    name, schema = json_schema.get("name"), json_schema.get("schema")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("response_format.json_schema.name is required", param=PARAM)
    if not isinstance(schema, dict):
        raise InvalidRequest("response_format.json_schema.schema must be a JSON Schema object", param=PARAM)
    check_json_schema(schema, "response_format.json_schema.schema", PARAM)
    return schema, json_schema.get("strict") is True


def check_json_schema(schema: dict[str, Any], where: str, param: str) -> None:
    """A 400 unless `schema` is a valid JSON Schema (2020-12) of reasonable depth."""
    if depth(schema) > MAX_DEPTH:  # before anything recursive reads it
        raise InvalidRequest(f"{where} is nested more than {MAX_DEPTH} levels deep", param=param)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"{where} is not a valid JSON Schema: {exc.message}", param=param) from None


@contextmanager
def grammar_errors(param: str) -> Iterator[None]:
    """Compiling a schema to a grammar: what cannot be honoured becomes a 400 naming it.
    Any other failure is the converter's, a server error (engine.grammar logs it)."""
    try:
        yield
    except UnsupportedSchema as exc:
        raise InvalidRequest(str(exc), param=param) from None


def compile_schema(schema: dict[str, Any], strict: bool = False, param: str = PARAM) -> str:
    """The GBNF grammar of a JSON Schema, or a 400 naming what cannot be honoured."""
    with grammar_errors(param):
        return _compile(json.dumps(schema), strict)  # property order is kept: the answer follows it


def plan_response(response_format: ResponseFormat | None) -> ResponsePlan:
    """The grammar, prompt instruction and answer check of a response_format."""
    if response_format is None or response_format.type == "text":
        return ResponsePlan()
    if response_format.type == "json_object":
        return ResponsePlan(json_object_gbnf(), "Answer with a single JSON object, and nothing else.",
                            lambda value: isinstance(value, dict), ({"type": "object"}, False))
    schema, strict = _schema_of(response_format.json_schema)
    instruction = ("Answer with a single JSON object, and nothing else, that follows this JSON Schema: "
                   + json.dumps(schema, separators=(",", ":")))
    return ResponsePlan(compile_schema(schema, strict), instruction, validator_of(schema), (schema, strict))


def text_is_valid(text: str, check: Check) -> bool:
    """Whether a whole answer parses as JSON and passes the check."""
    try:
        return check(json.loads(text))
    except ValueError:
        return False

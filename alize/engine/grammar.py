"""JSON Schema -> GBNF grammar, with llama.cpp's own converter (the pure-Python port that
ships with llama-cpp-python), after checking that the schema uses only what it compiles.

The converter silently ignores keywords it does not know; that would let a request ask
for a constraint and get an unconstrained answer. Here such a schema is refused instead,
naming the keyword."""

import json
from functools import cache
from typing import Any

from llama_cpp.llama_grammar import SchemaConverter

# Keywords the converter turns into grammar rules.
CONSTRAINTS = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
    "maxItems", "enum", "const", "$ref", "$defs", "definitions", "anyOf", "oneOf", "allOf", "pattern",
    "format", "minLength", "maxLength",
}
# Keywords that constrain nothing (annotations), accepted and ignored.
ANNOTATIONS = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "strict", "discriminator", "nullable",
}
FORMATS = {"date", "time", "date-time", "uuid"}
TYPES = {"string", "number", "integer", "boolean", "null", "object", "array"}


class UnsupportedSchema(ValueError):
    """The schema asks for something the grammar cannot enforce."""

    def __init__(self, message: str, keyword: str):
        super().__init__(message)
        self.keyword = keyword


# The converter's string characters admit raw control characters, which JSON forbids
# (llama.cpp's later converter excludes them too): an answer must parse with any parser.
_CHAR_RULE = 'char ::= [^"\\\\] |'
_STRICT_CHAR_RULE = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _strict(grammar: str) -> str:
    assert _CHAR_RULE in grammar or "char ::=" not in grammar, "llama.cpp's char rule changed"
    return grammar.replace(_CHAR_RULE, _STRICT_CHAR_RULE)


def check_schema(schema: Any, where: str = "schema") -> None:
    """Raises UnsupportedSchema for any keyword that would not be enforced."""
    if isinstance(schema, bool):
        if schema is False:
            raise UnsupportedSchema(f"{where}: the schema `false` is not supported", "false")
        return
    if not isinstance(schema, dict):
        raise UnsupportedSchema(f"{where} must be an object", "schema")
    for keyword, value in schema.items():
        if keyword in ANNOTATIONS:
            continue
        if keyword not in CONSTRAINTS:
            raise UnsupportedSchema(f"{where}: the JSON Schema keyword {keyword!r} is not supported "
                                    "by structured output", keyword)
        _check_keyword(keyword, value, f"{where}.{keyword}")


def _check_keyword(keyword: str, value: Any, where: str) -> None:
    if keyword == "type":
        types = value if isinstance(value, list) else [value]
        bad = [t for t in types if t not in TYPES]
        if bad:
            raise UnsupportedSchema(f"{where}: unknown type {bad[0]!r}", "type")
    elif keyword == "format" and value not in FORMATS:
        raise UnsupportedSchema(f"{where}: the string format {value!r} is not supported "
                                f"(supported: {', '.join(sorted(FORMATS))})", "format")
    elif keyword == "$ref" and not (isinstance(value, str) and value.startswith(("#/$defs/", "#/definitions/"))):
        raise UnsupportedSchema(f"{where}: only local references (#/$defs/...) are supported", "$ref")
    elif keyword in ("properties", "$defs", "definitions"):
        for name, sub in (value or {}).items():
            check_schema(sub, f"{where}.{name}")
    elif keyword in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(value or []):
            check_schema(sub, f"{where}[{i}]")
    elif keyword == "additionalProperties" and value is False:
        return  # no other properties: the grammar allows none
    elif keyword in ("items", "additionalProperties"):
        check_schema(value, where)


def schema_to_gbnf(schema: dict[str, Any]) -> str:
    """The grammar of the JSON documents that validate against `schema` (checked first)."""
    check_schema(schema)
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(json.loads(json.dumps(schema)), "input")
    converter.visit(schema, "")
    return _strict(converter.format_grammar())


@cache
def json_object_gbnf() -> str:
    """The grammar of any JSON object (JSON mode)."""
    return schema_to_gbnf({"type": "object"})


def _literal(text: str) -> str:
    return json.dumps(json.dumps(text))  # a GBNF string literal of the JSON string "text"


# How each tool-call style wraps its calls: (before the first, between two, after the last,
# the first character a text answer may not start with). A call is always the object
# {"name": ..., "arguments": {...}}.
CALL_STYLES = {
    "generic": ('"[" space', '"," space', '"]" space', "["),
    "mistral": ('"[TOOL_CALLS]" space "[" space', '"," space', '"]" space', "["),
    "hermes": (r'"<tool_call>\n"', r'"\n</tool_call>\n<tool_call>\n"', r'"\n</tool_call>"', "<"),
}


def tool_calls_gbnf(functions: list[tuple[str, dict[str, Any]]], parallel: bool, allow_text: bool,
                    style: str = "generic") -> str:
    """The grammar of one or more calls to the given functions, in the style's wrapping
    (CALL_STYLES), each call's arguments following that function's parameters schema;
    with allow_text, plain text (not starting like a call) is allowed instead."""
    before, between, after, opener = CALL_STYLES[style]
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    calls = []
    for i, (name, parameters) in enumerate(functions):
        check_schema(parameters, f"tools[{i}].function.parameters")
        schema = converter.resolve_refs(json.loads(json.dumps(parameters)), f"tool{i}")
        args_rule = converter.visit(schema, f"tool{i}-args")
        calls.append(converter._add_rule(
            f"tool{i}-call",
            rf'"{{" space "\"name\"" space ":" space {_literal(name)} space "," space '
            rf'"\"arguments\"" space ":" space {args_rule} "}}" space'))
    call = converter._add_rule("call", " | ".join(calls))
    more = f" ({between} {call})*" if parallel else ""
    wrapped = converter._add_rule("calls", f"{before} {call}{more} {after}")
    if allow_text:
        text = converter._add_rule("text", rf"[^\x{ord(opener):02X}\x00] [^\x00]*")
        converter._add_rule("root", f"{wrapped} | {text}")
    else:
        converter._add_rule("root", wrapped)
    return _strict(converter.format_grammar())

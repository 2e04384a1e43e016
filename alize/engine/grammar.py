"""JSON Schema -> GBNF grammar, with llama.cpp's own converter (the pure-Python port that
ships with llama-cpp-python), extended where it falls short:

- numeric bounds (minimum, maximum, exclusive*): integers exactly, decimals within them
  (numeric_grammar);
- the string formats clients send (email, uri, hostname, ipv4), as patterns; unanchored
  patterns are anchored (the answer then matches the pattern as JSON Schema reads it).

What no grammar expresses (multipleOf, uniqueItems, not, ...) is left to the validation
of the answer (services.structured); a strict schema that uses it is refused, naming the
keyword (check_schema). The converter ignores keywords it does not know: that is why the
schema is checked here first rather than trusted to it."""

import json
import logging
import re
from functools import cache
from typing import Any

from llama_cpp.llama_grammar import RESERVED_NAMES, SchemaConverter

from alize.engine.numeric_grammar import Bounds, integer_gbnf, number_gbnf
from alize.errors import EngineFailure

log = logging.getLogger(__name__)

# Keywords that constrain nothing (annotations), accepted and ignored.
ANNOTATIONS = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "strict", "discriminator", "nullable", "$anchor", "$dynamicAnchor", "$vocabulary",
}
# Keywords the grammar cannot enforce: the answer is validated against them afterwards, and
# a strict schema that uses them is refused.
NOT_ENFORCED = {
    "multipleOf", "uniqueItems", "not", "if", "then", "else", "dependentRequired", "dependentSchemas",
    "dependencies", "minProperties", "maxProperties", "patternProperties", "propertyNames", "contains",
    "minContains", "maxContains", "unevaluatedProperties", "unevaluatedItems", "contentEncoding",
    "contentMediaType", "contentSchema", "$dynamicRef", "$recursiveRef",
}
# String formats as patterns the grammar can follow: a subset of each format (what the
# grammar lets through is always valid), of bounded length so that a small model cannot
# run away inside one. date, time, date-time and uuid are the converter's.
_LABEL = r"[A-Za-z0-9]{1,16}(-[A-Za-z0-9]{1,16})?"
_DOMAIN = rf"({_LABEL}[.]){{1,3}}[A-Za-z]{{2,6}}"
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
FORMAT_PATTERNS = {
    "email": rf"^[A-Za-z0-9_%+-]{{1,16}}([.][A-Za-z0-9_%+-]{{1,16}}){{0,2}}@{_DOMAIN}$",
    "uri": rf"^https?://{_DOMAIN}(/[A-Za-z0-9._~%+=&?#-]{{0,32}}){{0,4}}$",
    "hostname": rf"^({_LABEL}[.]){{0,3}}{_LABEL}$",
    "ipv4": rf"^({_OCTET}[.]){{3}}{_OCTET}$",
}
FORMAT_PATTERNS["uri-reference"] = FORMAT_PATTERNS["iri"] = FORMAT_PATTERNS["iri-reference"] = FORMAT_PATTERNS["uri"]
FORMAT_PATTERNS["idn-email"], FORMAT_PATTERNS["idn-hostname"] = FORMAT_PATTERNS["email"], FORMAT_PATTERNS["hostname"]
FORMATS = {"date", "time", "date-time", "uuid", *FORMAT_PATTERNS}
MAX_DEPTH = 32  # schemas nested deeper are refused (pydantic models rarely pass 10)


class UnsupportedSchema(ValueError):
    """The schema asks for something the grammar cannot enforce (or is too deep)."""

    def __init__(self, message: str, keyword: str):
        super().__init__(message)
        self.keyword = keyword


# The converter's string characters admit raw control characters, which JSON forbids
# (llama.cpp's later converter excludes them too): an answer must parse with any parser.
_CHAR_RULE = 'char ::= [^"\\\\] |'
_STRICT_CHAR_RULE = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _strict_chars(grammar: str) -> str:
    if "char ::=" in grammar and _CHAR_RULE not in grammar:
        raise EngineFailure("llama.cpp's JSON grammar changed: its string rule was not found")
    return grammar.replace(_CHAR_RULE, _STRICT_CHAR_RULE)


def depth(value: Any) -> int:
    """How deeply lists and objects nest in a JSON value (iteratively: any depth is safe)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def check_schema(schema: Any, where: str = "schema", strict: bool = False) -> None:
    """Raises UnsupportedSchema for what cannot be honoured: a schema nested too deep,
    a reference that is not local, the schema `false`; with strict, any keyword or format
    the grammar does not enforce."""
    if depth(schema) > MAX_DEPTH:
        raise UnsupportedSchema(f"{where} is nested more than {MAX_DEPTH} levels deep", "depth")
    _check(schema, where, strict)


def _check(schema: Any, where: str, strict: bool) -> None:
    if isinstance(schema, bool):
        if schema is False:
            raise UnsupportedSchema(f"{where}: the schema `false` is not supported", "false")
        return
    if not isinstance(schema, dict):
        raise UnsupportedSchema(f"{where} must be an object", "schema")
    for keyword, value in schema.items():
        here = f"{where}.{keyword}"
        if strict and keyword in NOT_ENFORCED and not (keyword == "uniqueItems" and value is False):
            raise UnsupportedSchema(f"{here}: the JSON Schema keyword {keyword!r} cannot be enforced by "
                                    "structured output with strict: true (set strict to false to have "
                                    "the answer validated against it instead)", keyword)
        if keyword == "format" and strict and value not in FORMATS and schema.get("type", "string") == "string":
            raise UnsupportedSchema(f"{here}: the string format {value!r} cannot be enforced with strict: true "
                                    f"(enforced: {', '.join(sorted(FORMATS))})", "format")
        if keyword == "pattern" and strict and isinstance(value, str) and _pattern_for_grammar(value) is None:
            raise UnsupportedSchema(f"{here}: the pattern {value!r} uses what a grammar cannot follow (lookaround, "
                                    "backreferences, word boundaries, Unicode classes) with strict: true", "pattern")
        if keyword == "$ref" and not (isinstance(value, str) and value.startswith(("#/$defs/", "#/definitions/"))):
            raise UnsupportedSchema(f"{here}: only local references (#/$defs/...) are supported", "$ref")
        if keyword in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                _check(sub, f"{here}.{name}", strict)
        elif keyword in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            for i, sub in enumerate(value):
                _check(sub, f"{here}[{i}]", strict)
        elif keyword in ("items", "additionalProperties") and value is not False:
            _check(value, here, strict)


# Regex escapes as the converter's pattern parser takes them (it knows no \d, and keeps
# escaped punctuation such as \. as a GBNF escape that llama.cpp then refuses).
_CLASS_ESCAPES = {"d": "0-9", "w": "A-Za-z0-9_", "s": " \\t\\n\\r"}
_NEGATED = {"D": "d", "W": "w", "S": "s"}
# What a grammar cannot follow: lookaround, backreferences, word boundaries, Unicode classes.
_UNFOLLOWABLE = re.compile(r"\(\?|\\[1-9bBpPAZzGk]")


def _hex(char: str) -> str:
    return f"\\x{ord(char):02X}" if ord(char) < 256 else f"\\u{ord(char):04X}"


def _pattern_for_grammar(pattern: str) -> str | None:
    """The pattern in the subset the converter compiles, anchored (^...$: a JSON Schema
    pattern is an unanchored search, and a whole-string match always satisfies it);
    None if a grammar cannot follow it."""
    if _UNFOLLOWABLE.search(pattern):
        return None
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            e = pattern[i + 1]
            if e in _CLASS_ESCAPES:
                out.append(_CLASS_ESCAPES[e] if in_class else f"[{_CLASS_ESCAPES[e]}]")
            elif e in _NEGATED and not in_class:
                out.append(f"[^{_CLASS_ESCAPES[_NEGATED[e]]}]")
            elif e in "tnr":
                out.append("\\" + e)
            elif e.isalnum():
                return None  # \D inside a class, \u..., \x..: not in the subset
            else:
                out.append(_hex(e) if in_class else f"[{_hex(e)}]")
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    inner = "".join(out).removeprefix("^")
    if inner.endswith("$") and not inner.endswith("\\$"):
        inner = inner[:-1]
    return f"^({inner})$"


# Keywords that shape what the converter writes; a schema with none of them allows any value.
STRUCTURE = {"type", "properties", "additionalProperties", "items", "prefixItems", "enum", "const", "$ref",
             "anyOf", "oneOf", "allOf", "pattern", "format"}
ANY_VALUE = {"type": ["string", "number", "boolean", "null", "object", "array"]}


def _for_grammar(schema: Any) -> Any:
    """A copy of the schema in the terms the converter knows: formats as patterns,
    patterns anchored, what it cannot enforce left out (the answer is validated against
    the original), and `true` or a schema that constrains no shape as any value."""
    if schema is True:
        return dict(ANY_VALUE)
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for keyword, value in schema.items():
        if keyword in NOT_ENFORCED or keyword in ANNOTATIONS:
            continue
        if keyword in ("properties", "$defs", "definitions") and isinstance(value, dict):
            value = {name: _for_grammar(sub) for name, sub in value.items()}
        elif keyword in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            value = [_for_grammar(sub) for sub in value]
        elif keyword == "items" or (keyword == "additionalProperties" and isinstance(value, dict)):
            value = _for_grammar(value)
        out[keyword] = value
    if out.get("type", "string") == "string":
        followable = _pattern_for_grammar(out.pop("pattern")) if isinstance(out.get("pattern"), str) else None
        if followable is None and out.get("format") in FORMAT_PATTERNS:
            followable = _pattern_for_grammar(FORMAT_PATTERNS[out.pop("format")])
        if followable is not None:  # else validated afterwards (a strict schema was refused for it)
            out["pattern"] = followable
    if not STRUCTURE & out.keys():
        out.update(ANY_VALUE)
    return out


class _Converter(SchemaConverter):
    """llama.cpp's converter, with numeric bounds."""

    def __init__(self) -> None:
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)

    def visit(self, schema: dict[str, Any], name: str) -> str:
        kind = schema.get("type")
        bounds = Bounds.of(schema) if kind in ("integer", "number") and not {"enum", "const"} & schema.keys() else None
        if bounds is None:
            return super().visit(schema, name)
        body = integer_gbnf(bounds) if kind == "integer" else number_gbnf(bounds)
        if body is None:
            raise UnsupportedSchema(f"no {kind} satisfies minimum {bounds.minimum} and maximum {bounds.maximum}",
                                    "minimum")
        return self._add_rule(name + "-" if name in RESERVED_NAMES else name or "root", body)


def _compiled(build: Any) -> str:
    """Runs a grammar build; what fails inside the converter on a checked schema is the
    library's fault, never the client's: a logged server error."""
    try:
        return _strict_chars(build())
    except (UnsupportedSchema, EngineFailure):
        raise
    except Exception as exc:
        log.exception("the JSON Schema to grammar converter failed")
        raise EngineFailure(f"the grammar for this schema could not be built ({type(exc).__name__}: {exc})") from exc


def schema_to_gbnf(schema: dict[str, Any], strict: bool = False) -> str:
    """The grammar of JSON documents that follow `schema` (checked first)."""
    check_schema(schema, strict=strict)

    def build() -> str:
        converter = _Converter()
        resolved = converter.resolve_refs(_for_grammar(json.loads(json.dumps(schema))), "input")
        converter.visit(resolved, "")
        return converter.format_grammar()

    return _compiled(build)


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


def tool_calls_gbnf(functions: list[tuple[str, dict[str, Any], bool]], parallel: bool, allow_text: bool,
                    style: str = "generic", answer: tuple[dict[str, Any], bool] | None = None) -> str:
    """The grammar of one or more calls to the given functions (name, parameters, strict),
    in the style's wrapping (CALL_STYLES), each call's arguments following that function's
    parameters schema; with allow_text, plain text (not starting like a call) is allowed
    instead, or with `answer` (a JSON Schema of an object, and its strictness: a
    response_format) a JSON answer that follows it."""
    for i, (_, parameters, strict) in enumerate(functions):
        check_schema(parameters, f"tools[{i}].function.parameters", strict)
    if answer is not None:
        check_schema(answer[0], "response_format.json_schema.schema", answer[1])
        if answer[0].get("type") != "object":  # an answer must not start as calls do
            raise UnsupportedSchema("with tools, a response_format's schema must be of type object", "type")

    def build() -> str:
        before, between, after, opener = CALL_STYLES[style]
        converter = _Converter()
        calls = []
        for i, (name, parameters, _) in enumerate(functions):
            schema = converter.resolve_refs(_for_grammar(json.loads(json.dumps(parameters))), f"tool{i}")
            args_rule = converter.visit(schema, f"tool{i}-args")
            calls.append(converter._add_rule(
                f"tool{i}-call",
                rf'"{{" space "\"name\"" space ":" space {_literal(name)} space "," space '
                rf'"\"arguments\"" space ":" space {args_rule} "}}" space'))
        call = converter._add_rule("call", " | ".join(calls))
        more = f" ({between} {call})*" if parallel else ""
        wrapped = converter._add_rule("calls", f"{before} {call}{more} {after}")
        if allow_text and answer is not None:
            schema = converter.resolve_refs(_for_grammar(json.loads(json.dumps(answer[0]))), "answer")
            converter._add_rule("root", f"{wrapped} | {converter.visit(schema, 'answer')}")
        elif allow_text:
            text = converter._add_rule("text", rf"[^\x{ord(opener):02X}\x00] [^\x00]*")
            converter._add_rule("root", f"{wrapped} | {text}")
        else:
            converter._add_rule("root", wrapped)
        return converter.format_grammar()

    return _compiled(build)

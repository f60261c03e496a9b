"""Templates: literal JSON values with `${ expr }` JMESPath expressions inside.

A string that is exactly `${ expr }` (whitespace allowed inside) is an expression and
yields the raw value it evaluates to. A string with `${ expr }` among other text is
interpolated: each expression's value is written into it as a JSON scalar (a string as
itself, `42`, `true`, `null`); an object or a list is refused when rendered. `$${` writes a
literal `${`. Any other value is a literal. Dicts and lists are
walked, so `{"sku": "${ input.sku }", "qty": 1}` renders to a dict. Expressions are
compiled once, when the workflow is compiled, and evaluated against the context
`{"input": ..., "tasks": {id: {"output": ..., "status": ...}}, "run": {"id", "workflow",
"version"}}`.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
import msgspec
from jmespath import functions as jmespath_functions
from jmespath.exceptions import IncompleteExpressionError, JMESPathError, LexerError, ParseError

from treadle.domain._bounded import DEFAULT_MAX_BYTES, reads_context, search, task_references
from treadle.domain._cost import DEFAULT_MAX_COST, Meter
from treadle.domain.errors import (
    ExpressionBudgetExceeded,
    ExpressionError,
    ExpressionTooLarge,
    ValidationIssue,
)
from treadle.domain.secrets import SECRET_REF, has_secret_reference, malformed_reference

_KNOWN_FUNCTIONS = frozenset(jmespath_functions.Functions.FUNCTION_TABLE)
METER = object()
"""The context key (not a string, so no expression can read it) of a decision's `Meter`."""
# What a bad expression or odd data can make jmespath raise while searching.
_EVALUATION_ERRORS = (JMESPathError, TypeError, ValueError, KeyError, RecursionError)


class TemplateSyntaxError(ExpressionError):
    """An expression inside a template did not parse; `path` says where it sits."""

    def __init__(self, expression: str, reason: str, path: str) -> None:
        super().__init__(expression, reason)
        self.path = path


class Template:
    """A compiled value: render it against a context to get plain JSON-able data."""

    __slots__ = ()

    @property
    def is_literal(self) -> bool:
        """True when rendering never looks at the context (no expression inside)."""
        return False

    def render(self, context: Mapping[str, Any]) -> Any:
        """The value with every expression replaced by its result; raises ExpressionError."""
        raise NotImplementedError  # pragma: no cover - every subclass overrides it


class _Literal(Template):
    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    @property
    def is_literal(self) -> bool:
        return True

    def render(self, context: Mapping[str, Any]) -> Any:
        # A copy, so a caller that edits what it got cannot change the definition.
        if isinstance(self._value, dict | list):
            return copy.deepcopy(self._value)
        return self._value


class _Expression(Template):
    __slots__ = ("_compiled", "_max_bytes", "_max_cost", "source")

    def __init__(self, source: str, compiled: Any, max_bytes: int, max_cost: int) -> None:
        self.source = source
        self._compiled = compiled
        self._max_bytes = max_bytes
        self._max_cost = max_cost

    def render(self, context: Mapping[str, Any]) -> Any:
        data = dict(context)
        meter = data.pop(METER, None)  # type: ignore[call-overload]  # a non-string key
        parsed = self._compiled.parsed
        try:
            return search(
                self.source,
                parsed,
                data,
                self._max_bytes,
                max_cost=self._max_cost,
                meter=meter if isinstance(meter, Meter) else None,
            )
        except _EVALUATION_ERRORS as exc:
            raise ExpressionError(self.source, str(exc)) from None


class _Interpolated(Template):
    """A string with expressions inside other text: each value is written in as JSON."""

    __slots__ = ("_parts", "_path")

    def __init__(self, parts: list[str | _Expression], path: str) -> None:
        self._parts = parts
        self._path = path

    def render(self, context: Mapping[str, Any]) -> Any:
        return "".join(
            part if isinstance(part, str) else self._scalar_text(part, part.render(context))
            for part in self._parts
        )

    def _scalar_text(self, part: _Expression, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict | list):
            kind = "an object" if isinstance(value, dict) else "a list"
            where = f" in {self._path}" if self._path else ""
            reason = (
                f"is {kind}{where}; only a string, number, boolean or null can be "
                "interpolated into a string (a whole-string ${ ... } keeps the value itself)"
            )
            raise ExpressionError(part.source, reason)
        return msgspec.json.encode(value).decode()


class _Mapping(Template):
    __slots__ = ("_items",)

    def __init__(self, items: dict[str, Template]) -> None:
        self._items = items

    def render(self, context: Mapping[str, Any]) -> Any:
        return {key: item.render(context) for key, item in self._items.items()}


class _Sequence(Template):
    __slots__ = ("_items",)

    def __init__(self, items: list[Template]) -> None:
        self._items = items

    def render(self, context: Mapping[str, Any]) -> Any:
        return [item.render(context) for item in self._items]


class _Extended(Template):
    __slots__ = ("_base", "_extra")

    def __init__(self, base: Template, extra: dict[str, Any]) -> None:
        self._base = base
        self._extra = extra

    @property
    def is_literal(self) -> bool:
        return self._base.is_literal

    def render(self, context: Mapping[str, Any]) -> Any:
        return {**self._base.render(context), **copy.deepcopy(self._extra)}


def with_literal_fields(template: Template, extra: Mapping[str, Any]) -> Template:
    """A dict template plus fixed entries that are never read as expressions."""
    return _Extended(template, dict(extra))


def expression_source(value: Any) -> str | None:
    """The JMESPath text if `value` is exactly `${ expr }`, else None."""
    if not isinstance(value, str) or "${" not in value:
        return None
    try:
        pieces = split_interpolated(value)
    except TemplateSyntaxError:
        return None
    if len(pieces) == 1 and isinstance(pieces[0], Placeholder):
        return pieces[0].source
    return None


def has_expression(value: Any) -> bool:
    """Whether a string holds a `${ expr }` anywhere (a malformed one counts too)."""
    if not isinstance(value, str) or "${" not in value:
        return False
    try:
        pieces = split_interpolated(value)
    except TemplateSyntaxError:
        return True
    return any(isinstance(piece, Placeholder) for piece in pieces)


def compile_template(
    value: Any,
    path: str = "",
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_cost: int = DEFAULT_MAX_COST,
) -> Template:
    """Compile a JSON-able value; raises TemplateSyntaxError for the first bad expression.

    An expression whose value would take more than `max_bytes` as JSON fails to render
    (`ExpressionTooLarge`), or fails here when it reads nothing from the context.
    """
    issues: list[TemplateSyntaxError] = []
    template = _compile(value, path, issues, _Options(max_bytes=max_bytes, max_cost=max_cost))
    if issues:
        raise issues[0]
    return template


def check_template(
    value: Any,
    path: str,
    *,
    allow_secrets: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    tasks: Collection[str] | None = None,
    max_cost: int = DEFAULT_MAX_COST,
) -> tuple[Template | None, list[ValidationIssue]]:
    """Compile a value and report every bad expression in it, each at its own path.

    With `allow_secrets`, `${ secret.NAME }` references compile to themselves (see
    `treadle.domain.secrets`); without, they are an error. `max_bytes` bounds each
    expression's value as in `compile_template`. With `tasks` (the definition's task
    ids), an expression naming any other `tasks.<id>` is an error.
    """
    errors: list[TemplateSyntaxError] = []
    known = None if tasks is None else frozenset(tasks)
    template = _compile(value, path, errors, _Options(allow_secrets, max_bytes, known, max_cost))
    if errors:
        return None, [ValidationIssue(path=e.path, message=str(e)) for e in errors]
    return template, []


@dataclass(frozen=True)
class _Options:
    allow_secrets: bool = False
    max_bytes: int = DEFAULT_MAX_BYTES
    tasks: frozenset[str] | None = None
    max_cost: int = DEFAULT_MAX_COST


def _compile(value: Any, path: str, errors: list[TemplateSyntaxError], opts: _Options) -> Template:
    if isinstance(value, str):
        return _compile_string(value, path, errors, opts)
    if isinstance(value, dict):
        items = {str(k): _compile(v, _join(path, str(k)), errors, opts) for k, v in value.items()}
        if all(item.is_literal for item in items.values()):
            return _Literal(value)
        return _Mapping(items)
    if isinstance(value, list):
        elements = [_compile(v, f"{path}[{i}]", errors, opts) for i, v in enumerate(value)]
        if all(element.is_literal for element in elements):
            return _Literal(value)
        return _Sequence(elements)
    return _Literal(value)


def _compile_string(
    value: str, path: str, errors: list[TemplateSyntaxError], opts: _Options
) -> Template:
    if has_secret_reference(value):
        return _compile_secret_string(value, path, errors, opts.allow_secrets)
    if "${" not in value:
        return _Literal(value)
    try:
        pieces = split_interpolated(value)
    except TemplateSyntaxError as exc:
        exc.path = path
        errors.append(exc)
        return _Literal(None)
    if len(pieces) == 1 and isinstance(pieces[0], Placeholder):
        return _compile_expression(pieces[0].source, path, errors, opts)
    parts: list[str | _Expression] = []
    for piece in pieces:
        if isinstance(piece, str):
            parts.append(piece)
            continue
        compiled = _compile_expression(piece.source, path, errors, opts)
        if isinstance(compiled, _Expression):
            parts.append(compiled)
    if all(isinstance(part, str) for part in parts):
        return _Literal("".join(str(part) for part in parts))
    return _Interpolated(parts, path)


@dataclass(frozen=True)
class Placeholder:
    """A `${ expr }` found in a string: the JMESPath text between the braces, trimmed."""

    source: str


_QUOTES = frozenset({"'", '"', "`"})


def split_interpolated(text: str) -> list[str | Placeholder]:
    """Split a string into literal text and `${ expr }` placeholders; `$${` is a literal `${`.

    The closing `}` is found the way JMESPath reads the expression: braces of a
    multiselect (`{a: b}`) nest, and quoted text (`'}'`, `"}"`, a `` `{}` `` literal) is
    skipped, so `${ {id: input.id} }` is one placeholder. Raises TemplateSyntaxError (with
    an empty path, which the caller fills in) for a `${` that is never closed.
    """
    pieces: list[str | Placeholder] = []
    literal: list[str] = []
    index = 0
    while index < len(text):
        if text.startswith("$${", index):
            literal.append("${")
            index += 3
        elif text.startswith("${", index):
            end = _closing_brace(text, index + 2)
            if literal:
                pieces.append("".join(literal))
                literal = []
            pieces.append(Placeholder(text[index + 2 : end].strip()))
            index = end + 1
        else:
            literal.append(text[index])
            index += 1
    if literal:
        pieces.append("".join(literal))
    return pieces


def _closing_brace(text: str, start: int) -> int:
    depth, quote, index = 0, "", start
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in _QUOTES:
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            if depth == 0:
                return index
            depth -= 1
        index += 1
    snippet = text[start - 2 : start + 30]
    raise TemplateSyntaxError(snippet, "the ${ is never closed with }", "")


def _compile_expression(
    source: str, path: str, errors: list[TemplateSyntaxError], opts: _Options
) -> Template:
    if not source:
        errors.append(TemplateSyntaxError(source, "the expression is empty", path))
        return _Literal(None)
    try:
        compiled = jmespath.compile(source)
    except JMESPathError as exc:
        errors.append(TemplateSyntaxError(source, _parse_reason(exc), path))
        return _Literal(None)
    problem = _tree_problem(compiled.parsed, opts)
    if problem is None:
        expression = _Expression(source, compiled, opts.max_bytes, opts.max_cost)
        too_large = _static_too_large(expression, compiled.parsed)
        if too_large is None:
            return expression
        problem = too_large.reason
    errors.append(TemplateSyntaxError(source, problem, path))
    return _Literal(None)


def _tree_problem(parsed: Any, opts: _Options) -> str | None:
    """Why a parsed expression is refused before it is ever evaluated, or None."""
    unknown = sorted(set(_function_names(parsed)) - _KNOWN_FUNCTIONS)
    if unknown:
        return f"unknown function {unknown[0]}()"
    if _reads_secret_root(parsed):
        return (
            "secret may only be used as a whole value ${ secret.NAME } "
            "(write @.secret for a field called secret)"
        )
    missing = _unknown_task(parsed, opts.tasks)
    if missing is not None:
        return f"unknown task {missing!r}"
    return None


def _unknown_task(parsed: Any, known: frozenset[str] | None) -> str | None:
    # `tasks.nope.output` would quietly be null in every run; a typo is caught here instead.
    if known is None:
        return None
    return next((name for name in task_references(parsed) if name not in known), None)


def _static_too_large(
    expression: _Expression, parsed: Any
) -> ExpressionTooLarge | ExpressionBudgetExceeded | None:
    # An expression that reads nothing from the context has one value whatever the run:
    # if it is too large, say so at registration rather than in every run.
    if reads_context(parsed):
        return None
    try:
        expression.render({})
    except (ExpressionTooLarge, ExpressionBudgetExceeded) as exc:
        return exc
    except ExpressionError:
        return None  # other evaluation errors keep failing at run time, as before
    return None


def _compile_secret_string(
    value: str, path: str, errors: list[TemplateSyntaxError], allow_secrets: bool
) -> Template:
    # A reference renders to itself: the decider never holds a secret, the worker
    # substitutes it (treadle.domain.secrets explains why).
    problem = malformed_reference(value) or _mixed_with_secret(value)
    if problem is None and not allow_secrets:
        problem = "secret references are only resolved in an http task's request"
    if problem is not None:
        errors.append(TemplateSyntaxError(value, problem, path))
        return _Literal(None)
    return _Literal(value)


def _mixed_with_secret(value: str) -> str | None:
    # The worker substitutes every reference in the rendered string: an interpolated value
    # (from a run's input, say) could carry a reference of its own and read that secret.
    try:
        pieces = split_interpolated(value)
    except TemplateSyntaxError as exc:
        return exc.reason
    others = [p for p in pieces if isinstance(p, Placeholder) and not _is_secret(p.source)]
    if others:
        return (
            "a string with a secret reference cannot also interpolate other expressions "
            "(a value could carry a reference of its own)"
        )
    return None


def _is_secret(source: str) -> bool:
    return SECRET_REF.fullmatch(f"${{ {source} }}") is not None


def _reads_secret_root(node: Any, *, nested: bool = False) -> bool:
    # `secret.X` inside a larger expression would evaluate to null in the decider (there
    # is no `secret` in its context) and hint at string tricks; it is refused instead.
    # A field named `secret` is fine after a dot (`input.secret`), i.e. as the right
    # child of a subexpression.
    if not isinstance(node, dict):
        return False
    if node.get("type") == "field" and node.get("value") == "secret" and not nested:
        return True
    children = node.get("children", ())
    is_path = node.get("type") == "subexpression"
    return any(
        _reads_secret_root(child, nested=is_path and index > 0)
        for index, child in enumerate(children)
    )


def _function_names(node: Any) -> Iterator[str]:
    # jmespath only notices an unknown function when it calls it; we want it at compile time.
    if isinstance(node, dict):
        if node.get("type") == "function_expression":
            yield str(node.get("value"))
        for child in node.get("children", ()):
            yield from _function_names(child)


def _parse_reason(exc: JMESPathError) -> str:
    # jmespath's own text spans three lines with a caret; one line reads better in a 422.
    if isinstance(exc, IncompleteExpressionError):
        return "does not parse: the expression is incomplete"
    if isinstance(exc, LexerError):
        return f"does not parse: {exc.message} at column {exc.lexer_position}"
    if isinstance(exc, ParseError):
        return f"does not parse: unexpected {exc.token_value!r} at column {exc.lex_position}"
    return f"does not parse: {exc}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def is_truthy(value: Any) -> bool:
    """JMESPath truth: false, null, "", [] and {} are false; every number is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True

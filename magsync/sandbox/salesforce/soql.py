"""The SOQL that integrations send, parsed and evaluated against the store.

Supported::

    SELECT field, Parent.field, ... | COUNT()
    FROM Object
    [WHERE condition]          -- =, !=, <>, <, <=, >, >=, LIKE, IN (...), NOT IN (...),
                               -- AND / OR (not mixed without parentheses), NOT, parentheses
    [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...]
    [LIMIT n] [OFFSET n]

Literals: 'strings' with SOQL's escapes (``\\n \\N \\r \\R \\t \\T \\b \\B \\f \\F \\" \\' \\\\``,
``\\uXXXX``, and ``\\_ \\%`` inside LIKE only; any other backslash is an error), numbers,
true/false, null, dates (2023-10-26), datetimes (2023-10-26T10:00:00Z) and TODAY / YESTERDAY /
TOMORROW. Keywords, objects and fields are case-insensitive; text comparisons too, as in
Salesforce; ``!=`` matches null values.

Errors are Salesforce's: MALFORMED_QUERY (syntax, with the ``ERROR at Row:R:Column:C`` pointer),
INVALID_TYPE (unknown object), INVALID_FIELD (unknown field or relationship, unfilterable field),
INVALID_QUERY_FILTER_OPERATOR (a literal of the wrong type for its field).
"""

import datetime
import re
from dataclasses import dataclass, field

from magsync.sandbox.salesforce import ids
from magsync.sandbox.salesforce.errors import SalesforceError, bad_request
from magsync.sandbox.salesforce.schema import NUMBER_TYPES, TEXT_TYPES
from magsync.sandbox.salesforce.validation import parse_datetime

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>[+-]?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<string>')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),:])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
_KEYWORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "LIMIT",
        "OFFSET",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "TRUE",
        "FALSE",
        "NULL",
        "COUNT",
        "INCLUDES",
        "EXCLUDES",
        "GROUP",
        "HAVING",
        "WITH",
        "FOR",
        "USING",
        "TYPEOF",
    }
)
_DATE_WORDS = {"TODAY": 0, "YESTERDAY": -1, "TOMORROW": 1}
FILTER_TYPES = {
    "currency": "currency",
    "double": "double",
    "percent": "double",
    "int": "integer",
    "boolean": "boolean",
    "date": "date",
    "datetime": "dateTime",
}
NO_COLUMN = (
    "No such column '{}' on entity '{}'. If you are attempting to use a custom field, be sure to "
    "append the '__c' after the custom field name. Please reference your WSDL or the describe call "
    "for the appropriate names."
)
NO_RELATIONSHIP = (
    "Didn't understand relationship '{}' in field path. If you are attempting to use a custom "
    "relationship, be sure to append the '__r' after the custom relationship name. Please "
    "reference your WSDL or the describe call for the appropriate names."
)
NO_TYPE = (
    "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to "
    "append the '__c' after the entity name. Please reference your WSDL or the describe call for "
    "the appropriate names."
)


@dataclass
class Token:
    kind: str
    text: str
    pos: int

    @property
    def word(self):
        return self.text.upper() if self.kind == "ident" else None


@dataclass
class Path:
    """A selected or filtered field: an optional relationship hop, then the field."""

    relationship: object  # the reference Field of the queried object, or None
    target: object  # SObject the final field belongs to
    field: object
    text: str

    def value(self, store, record):
        if self.relationship is None:
            return record.get(self.field.name)
        parent = self.parent(store, record)
        return parent.get(self.field.name) if parent else None

    def parent(self, store, record):
        parent_id = record.get(self.relationship.name)
        return store.get(self.target.name, parent_id) if parent_id else None


@dataclass
class Literal:
    kind: str  # string, number, boolean, null, date, datetime
    value: object
    token: Token
    raw: str = ""  # the undecoded text of a string literal, for LIKE


@dataclass
class Query:
    sobject: object
    fields: list = field(default_factory=list)
    count: bool = False
    where: object = None
    order: list = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


class _Parser:
    def __init__(self, text, schema):
        self.text = text
        self.schema = schema
        self.tokens = self._tokenize(text)
        self.i = 0
        self.obj = None

    # -- errors ------------------------------------------------------------------------------

    def error(self, token, detail, code="MALFORMED_QUERY"):
        pos = token.pos if token else len(self.text)
        row = self.text.count("\n", 0, pos) + 1
        line_start = self.text.rfind("\n", 0, pos) + 1
        line_end = self.text.find("\n", pos)
        line = self.text[line_start : line_end if line_end >= 0 else len(self.text)]
        column = pos - line_start + 1
        message = f"\n{line}\n{' ' * (column - 1)}^\nERROR at Row:{row}:Column:{column}\n{detail}"
        return bad_request(code, message)

    def unexpected(self, token):
        if token.kind == "eof":
            return self.error(token, "unexpected token: <EOF>")
        if token.kind == "unterminated":
            detail = f"line 1:{len(self.text)} mismatched character '<EOF>' expecting '''"
            return self.error(token, detail)
        return self.error(token, f"unexpected token: '{token.text}'")

    # -- tokens ------------------------------------------------------------------------------

    def _tokenize(self, text):
        tokens = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match:
                raise self.error(Token("char", text[pos], pos), f"unexpected token: '{text[pos]}'")
            kind = match.lastgroup
            if kind == "string":
                end = self._string_end(text, pos)
                if end is None:
                    # Reported only if the parser gets this far: an earlier token may be the
                    # real mistake (an unescaped quote inside a literal).
                    tokens.append(Token("unterminated", text[pos:], pos))
                    break
                tokens.append(Token("string", text[pos + 1 : end], pos))
                pos = end + 1
                continue
            if kind != "ws":
                tokens.append(Token(kind, match.group(), pos))
            pos = match.end()
        tokens.append(Token("eof", "", len(text)))
        return tokens

    def _string_end(self, text, start):
        pos = start + 1
        while pos < len(text):
            if text[pos] == "\\":
                pos += 2
                continue
            if text[pos] == "'":
                return pos
            pos += 1
        return None

    @property
    def token(self):
        return self.tokens[self.i]

    def advance(self):
        token = self.tokens[self.i]
        self.i += 1
        return token

    def accept(self, *words):
        if self.token.word in words:
            return self.advance()
        return None

    def expect(self, word):
        token = self.accept(word)
        if token is None:
            raise self.unexpected(self.token)
        return token

    def accept_punct(self, char):
        if self.token.kind == "punct" and self.token.text == char:
            return self.advance()
        return None

    def expect_punct(self, char):
        token = self.accept_punct(char)
        if token is None:
            raise self.unexpected(self.token)
        return token

    # -- grammar -----------------------------------------------------------------------------

    def parse(self):
        self.expect("SELECT")
        select_start = self.i
        count = False
        if self.token.word == "COUNT" and self.tokens[self.i + 1].text == "(":
            self.advance()
            self.advance()
            self.expect_punct(")")
            count = True
        else:
            while True:
                token = self.token
                if token.kind != "ident" or token.word in ("FROM",):
                    raise self.unexpected(token)
                self.advance()
                if not self.accept_punct(","):
                    break
        select_end = self.i
        self.expect("FROM")
        name_token = self.advance()
        if name_token.kind != "ident" or name_token.word in _KEYWORDS:
            raise self.unexpected(name_token)
        self.obj = self.schema.get(name_token.text)
        if self.obj is None:
            raise self.error(name_token, NO_TYPE.format(name_token.text), "INVALID_TYPE")
        query = Query(self.obj, count=count)
        if not count:
            for token in self.tokens[select_start:select_end]:
                if token.kind == "ident":
                    query.fields.append(self.path(token))
        if self.accept("WHERE"):
            query.where = self.condition()
        if self.accept("ORDER"):
            self.expect("BY")
            while True:
                token = self.advance()
                if token.kind != "ident":
                    raise self.unexpected(token)
                path = self.path(token)
                descending = self.accept("DESC") is not None
                if not descending:
                    self.accept("ASC")
                # Salesforce sorts nulls first ascending and last descending unless told.
                nulls_last = descending
                if self.accept("NULLS"):
                    nulls_last = self.accept("LAST") is not None
                    if not nulls_last:
                        self.expect("FIRST")
                query.order.append((path, descending, nulls_last))
                if not self.accept_punct(","):
                    break
        if self.accept("LIMIT"):
            query.limit = self.integer()
        if self.accept("OFFSET"):
            offset_token = self.token
            query.offset = self.integer()
            if query.offset > 2000:
                raise self.error(
                    offset_token,
                    "Maximum SOQL offset allowed is 2000",
                    "NUMBER_OUTSIDE_VALID_RANGE",
                )
        if self.token.kind != "eof":
            raise self.unexpected(self.token)
        return query

    def integer(self):
        token = self.advance()
        if token.kind != "number" or not token.text.isdigit():
            raise self.unexpected(token)
        return int(token.text)

    def path(self, token):
        parts = token.text.split(".")
        if len(parts) > 1 and parts[0].lower() == self.obj.name.lower():
            parts = parts[1:]
        if len(parts) == 1:
            f = self.obj.field(parts[0])
            if f is None:
                raise self.error(token, NO_COLUMN.format(parts[0], self.obj.name), "INVALID_FIELD")
            return Path(None, self.obj, f, token.text)
        if len(parts) == 2:
            relationship = self.obj.relationships.get(parts[0].lower())
            target = self.schema.get(relationship.reference_to[0]) if relationship else None
            if target is None:
                raise self.error(token, NO_RELATIONSHIP.format(parts[0]), "INVALID_FIELD")
            f = target.field(parts[1])
            if f is None:
                raise self.error(token, NO_COLUMN.format(parts[1], target.name), "INVALID_FIELD")
            return Path(relationship, target, f, token.text)
        raise self.error(token, NO_RELATIONSHIP.format(parts[0]), "INVALID_FIELD")

    def condition(self):
        left = self.term()
        joiner = None
        operands = [left]
        while self.token.word in ("AND", "OR"):
            word = self.token.word
            if joiner and word != joiner:
                # SOQL refuses AND and OR at one level without parentheses.
                raise self.unexpected(self.token)
            joiner = word
            self.advance()
            operands.append(self.term())
        if joiner is None:
            return left
        return (joiner, operands)

    def term(self):
        if self.accept("NOT"):
            return ("NOT", self.term())
        if self.accept_punct("("):
            inner = self.condition()
            self.expect_punct(")")
            return inner
        token = self.advance()
        if token.kind != "ident" or token.word in _KEYWORDS:
            raise self.unexpected(token)
        path = self.path(token)
        f = path.field
        if f.type == "textarea" and f.length > 255:
            raise self.error(
                token, f"field '{f.name}' can not be filtered in a query call", "INVALID_FIELD"
            )
        negate = bool(self.accept("NOT"))
        if self.accept("IN"):
            self.expect_punct("(")
            values = [self.literal(path)]
            while self.accept_punct(","):
                values.append(self.literal(path))
            self.expect_punct(")")
            return ("NOT IN" if negate else "IN", path, values, _Choices.of(f, values))
        if negate:
            raise self.unexpected(self.token)
        if self.accept("LIKE"):
            literal = self.literal(path, like=True)
            return ("LIKE", path, literal)
        op_token = self.advance()
        if op_token.kind != "op":
            raise self.unexpected(op_token)
        return (op_token.text, path, self.literal(path))

    def literal(self, path, like=False):
        token = self.advance()
        f = path.field
        if token.kind == "string":
            value = self.decode(token, like)
            literal = Literal("string", value, token, token.text)
        elif token.kind == "number":
            literal = Literal("number", float(token.text), token)
        elif token.kind == "date":
            literal = Literal("date", token.text, token)
        elif token.kind == "datetime":
            literal = Literal("datetime", token.text, token)
        elif token.word in ("TRUE", "FALSE"):
            literal = Literal("boolean", token.word == "TRUE", token)
        elif token.word == "NULL":
            return Literal("null", None, token)
        elif token.word in _DATE_WORDS:
            day = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(
                days=_DATE_WORDS[token.word]
            )
            literal = Literal("date", day.isoformat(), token)
        else:
            raise self.unexpected(token)
        self.check_type(f, literal)
        return literal

    def check_type(self, f, literal):
        if f.type in TEXT_TYPES or f.type == "reference":
            if literal.kind == "string":
                return
            message = (
                f"value of filter criterion for field '{f.name}' must be of type string and "
                "should be enclosed in quotes"
            )
        else:
            wanted = {
                "boolean": ("boolean",),
                "date": ("date",),
                "datetime": ("datetime", "date"),
            }.get(f.type, ("number",))
            if literal.kind in wanted:
                return
            message = (
                f"value of filter criterion for field '{f.name}' must be of type "
                f"{FILTER_TYPES[f.type]} and should not be enclosed in quotes"
            )
        raise self.error(literal.token, message, "INVALID_QUERY_FILTER_OPERATOR")

    def decode(self, token, like):
        """The value of a string literal; in LIKE, a regex pattern."""
        raw = token.text
        out = []
        i = 0
        while i < len(raw):
            char = raw[i]
            if char != "\\":
                if like and char == "%":
                    out.append(".*")
                elif like and char == "_":
                    out.append(".")
                else:
                    out.append(re.escape(char) if like else char)
                i += 1
                continue
            nxt = raw[i + 1] if i + 1 < len(raw) else ""
            if nxt and nxt.lower() in _ESCAPES:
                decoded = _ESCAPES[nxt.lower()]
                out.append(re.escape(decoded) if like else decoded)
                i += 2
            elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", raw[i + 2 : i + 6]):
                decoded = chr(int(raw[i + 2 : i + 6], 16))
                out.append(re.escape(decoded) if like else decoded)
                i += 6
            elif like and nxt in ("%", "_"):
                out.append(re.escape(nxt))
                i += 2
            else:
                raise self.error(
                    token,
                    f"Invalid string literal '{raw}'. "
                    f"Illegal character sequence '\\{nxt}' in string literal.",
                )
        return "".join(out)


def parse(text, schema):
    """The parsed query, or ``SalesforceError`` as Salesforce answers malformed SOQL."""
    if not text or not text.strip():
        raise bad_request("MALFORMED_QUERY", "A query string has to be specified")
    return _Parser(text, schema).parse()


# -- evaluation ------------------------------------------------------------------------------


def _comparable(f, value):
    if value is None:
        return None
    if f.type in ("id", "reference"):
        return ids.normalize(value) or value
    if isinstance(value, str) and f.type in TEXT_TYPES:
        return value.casefold()
    if f.type in NUMBER_TYPES:
        return float(value)
    return value


def _literal_value(f, literal):
    if literal.kind == "date" and f.type == "datetime":
        return literal.value
    if literal.kind == "datetime":
        moment = parse_datetime(literal.value)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"
    return _comparable(f, literal.value)


_COMPARE = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class _Choices:
    """The values of ``field IN (...)``, computed once per query: each literal as ``=``
    compares it (``_literal_value``), and whether NULL is among them. A lookup of a page's worth
    of emails then costs one set test per record, not one comparison per literal."""

    __slots__ = ("null", "values")

    def __init__(self, values, null):
        self.values = values
        self.null = null

    @classmethod
    def of(cls, f, literals):
        """The choices of ``literals`` for field ``f``; None for a datetime field, where a date
        literal compares the record's day only (each literal is then compared in turn)."""
        if f.type == "datetime":
            return None
        values = frozenset(_literal_value(f, lit) for lit in literals if lit.kind != "null")
        return cls(values, any(lit.kind == "null" for lit in literals))

    def holds(self, f, actual):
        """True when ``actual`` equals one of the choices, as ``_compare("=")`` decides."""
        if actual is None:
            return self.null
        if not self.values:
            return False
        left = _comparable(f, actual)
        try:
            return left in self.values
        except TypeError:  # a value that cannot be hashed is compared in turn
            return any(left == value for value in self.values)


def _compare(op, f, actual, literal):
    if literal.kind == "null":
        is_null = actual is None
        return is_null if op == "=" else not is_null if op in ("!=", "<>") else False
    expected = _literal_value(f, literal)
    left = _comparable(f, actual)
    if f.type == "datetime" and literal.kind == "date" and left is not None:
        left = left[:10]
    if op in ("!=", "<>"):
        return left != expected
    if left is None:
        return False
    return _COMPARE[op](left, expected)


def matches(store, node, record):
    """True when ``record`` satisfies the WHERE tree ``node``."""
    if node is None:
        return True
    head = node[0]
    if head == "AND":
        return all(matches(store, sub, record) for sub in node[1])
    if head == "OR":
        return any(matches(store, sub, record) for sub in node[1])
    if head == "NOT":
        return not matches(store, node[1], record)
    path = node[1]
    actual = path.value(store, record)
    if head in ("IN", "NOT IN"):
        choices = node[3]
        if choices is None:
            found = any(_compare("=", path.field, actual, literal) for literal in node[2])
        else:
            found = choices.holds(path.field, actual)
        return found if head == "IN" else not found
    if head == "LIKE":
        if actual is None:
            return False
        return re.fullmatch(node[2].value, str(actual), re.IGNORECASE | re.DOTALL) is not None
    return _compare(head, path.field, actual, node[2])


def _sort_key(store, path, descending, nulls_last, record):
    value = _comparable(path.field, path.value(store, record))
    missing = value is None
    # Nulls go first or last regardless of direction, so flip their flag when descending.
    null_rank = 1 if nulls_last != descending else 0
    return (null_rank if missing else 1 - null_rank, value if not missing else 0)


def execute(store, query, version, include_deleted=False):
    """``(total, records)``: the matching records projected as the REST API returns them."""
    name = query.sobject.name
    with store.lock:
        rows = list(store.records[name].values())
        if include_deleted:
            rows += list(store.deleted[name].values())
        selected = [record for record in rows if matches(store, query.where, record)]
        for path, descending, nulls_last in reversed(query.order):
            selected.sort(
                key=lambda r, p=path, d=descending, n=nulls_last: _sort_key(store, p, d, n, r),
                reverse=descending,
            )
        if query.offset:
            selected = selected[query.offset :]
        if query.limit is not None:
            selected = selected[: query.limit]
        if query.count:
            return len(selected), []
        return len(selected), [project(store, query, record, version) for record in selected]


def attributes(sobject, record_id, version):
    return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record_id}"}


def project(store, query, record, version):
    """One result record: ``attributes`` then the selected fields in SELECT order."""
    out = {"attributes": attributes(query.sobject.name, record["Id"], version)}
    for path in query.fields:
        if path.relationship is None:
            out[path.field.name] = record.get(path.field.name)
            continue
        key = path.relationship.relationship_name
        parent = path.parent(store, record)
        if parent is None:
            out[key] = None
            continue
        nested = out.get(key)
        if nested is None:
            nested = out[key] = {"attributes": attributes(path.target.name, parent["Id"], version)}
        nested[path.field.name] = parent.get(path.field.name)
    return out


__all__ = ["SalesforceError", "execute", "parse"]

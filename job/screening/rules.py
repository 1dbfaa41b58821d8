"""Rules from the policy file: a SQL condition on one transaction, evaluated by polars.

    [[policy.rules]]
    name = "consulting_large"
    when = "amount > 5000 AND vendor ILIKE '%consult%'"
    reason = "large consulting payment: check the statement of work"

The condition is a SQL *expression*, parsed by polars' SQL front end into a polars
expression and evaluated over the ledger's columns; nothing else can run. polars has no
tables to reach (a subquery names a relation that does not exist), no statements (``;`` is
a parse error), no I/O functions, and every column a rule names must be one of
`RULE_COLUMNS`. Aggregates and window functions are refused too: a rule looks at one
transaction at a time, whatever else is in the file. Money is exact: `amount` is a
decimal, and polars reads literals such as ``5000.01`` as decimals when compared with it.

Every problem is a `ConfigError` (exit 3) naming the rule: `compile_rules` runs before
any ledger is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import polars as pl
from polars.datatypes import DataTypeClass

from job.config import Config, UserRule
from job.errors import ConfigError
from job.ledger.ingest import currency_exponent

__all__ = ["RULE_COLUMNS", "CompiledRule", "compile_rules", "match_rules", "rule_columns", "amount_expression"]

AMOUNT_SCALE = 4  # the most decimals any currency has (CLF, UYW)
RULE_COLUMNS: dict[str, pl.DataType | DataTypeClass] = {
    "id": pl.String,
    "date": pl.Date,
    "amount": pl.Decimal(38, AMOUNT_SCALE),
    "currency": pl.String,
    "vendor": pl.String,
    "memo": pl.String,
    "account": pl.String,
}
# Expression nodes that look at more than the one row: aggregates, windows, sorting, slicing.
_NOT_ROW_WISE = {
    "Agg",
    "Over",
    "Window",
    "Rolling",
    "Len",
    "Slice",
    "Gather",
    "Filter",
    "Sort",
    "SortBy",
    "Explode",
    "SubPlan",
    "Shift",
    "CumSum",
    "CumCount",
    "CumProd",
    "CumMin",
    "CumMax",
    "Diff",
    "Rank",
    "Unique",
    "NUnique",
    "Reverse",
    "FillNullWithStrategy",
    "Implode",
    "Repeat",
}
_PROBE = pl.DataFrame(
    {
        "id": ["P-1", "P-2", "P-3"],
        "date": [date(2026, 1, 3), date(2026, 6, 15), date(2026, 12, 31)],
        "amount": [Decimal("-250.5"), Decimal("0"), Decimal("123456.78")],
        "currency": ["USD", "EUR", "JPY"],
        "vendor": ["Acme Consulting", "", "Globex Travel, Inc."],
        "memo": ["Misc", "Invoice 7", ""],
        "account": ["6100", "", "7300"],
    },
    schema=RULE_COLUMNS,
)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    name: str
    reason: str
    expression: pl.Expr


def _fail(config_where: str, rule: UserRule, problem: str) -> ConfigError:
    return ConfigError(f"{config_where}: {rule.key} ({rule.name}): when: {problem}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].strip() if text else type(exc).__name__


def _node_kinds(tree: object) -> Iterable[str]:
    """Node and function names in the serialized expression tree (literal values left out)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield key
            if key != "Literal":
                yield from _node_kinds(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _node_kinds(value)
    elif isinstance(tree, str):
        yield tree


def compile_rules(config: Config) -> list[CompiledRule]:
    """Check every rule of the policy; return them ready to evaluate, in config order."""
    where = str(config.path or "defaults")
    return [_compile(rule, where) for rule in config.policy.rules]


def _compile(rule: UserRule, where: str) -> CompiledRule:
    try:
        expression = pl.sql_expr(rule.when)
    except Exception as exc:  # polars raises several exception types for bad SQL
        problem = _first_line(exc)
        if "relation" in problem and "not found" in problem:
            problem = "subqueries and other tables are not allowed: a rule looks at one transaction's columns"
        raise _fail(where, rule, f"cannot read {rule.when!r}: {problem}") from None
    if isinstance(expression, list):
        raise _fail(where, rule, "write one condition, not a list")
    try:
        tree = json.loads(expression.meta.serialize(format="json"))
    except Exception as exc:
        raise _fail(where, rule, f"cannot read {rule.when!r}: {_first_line(exc)}") from None
    if kinds := sorted(set(_node_kinds(tree)) & _NOT_ROW_WISE):
        if "SubPlan" in kinds:
            raise _fail(where, rule, "subqueries and other tables are not allowed: a rule looks at one transaction's columns")
        raise _fail(
            where, rule, f"aggregate and window functions are not allowed ({', '.join(kinds)}): a rule looks at one transaction at a time"
        )
    unknown = sorted(set(expression.meta.root_names()) - set(RULE_COLUMNS))
    if unknown:
        raise _fail(where, rule, f"unknown column {', '.join(map(repr, unknown))}; the columns are {', '.join(RULE_COLUMNS)}")
    try:
        probe = _PROBE.select(expression.alias("hit"))["hit"]
        alone = [_PROBE.slice(i, 1).select(expression.alias("hit"))["hit"][0] for i in range(_PROBE.height)]
    except Exception as exc:
        problem = _first_line(exc)
        if "compare" in problem and ("date" in problem or "temporal" in problem):
            problem = "cannot compare a date with text (write dates as DATE '2026-11-01')"
        raise _fail(where, rule, f"cannot evaluate {rule.when!r}: {problem}") from None
    if probe.dtype != pl.Boolean:
        raise _fail(where, rule, f"must be a condition (true or false), but {rule.when!r} gives {probe.dtype}")
    if probe.len() != _PROBE.height or probe.to_list() != alone:
        raise _fail(where, rule, "aggregate and window functions are not allowed: a rule looks at one transaction at a time")
    return CompiledRule(rule.name, rule.reason, expression)


def amount_expression(currencies: Iterable[str], amount_minor: str = "amount_minor", currency: str = "currency") -> pl.Expr:
    """Exact decimal amounts from integer minor units and each row's currency (one of `currencies`)."""
    factors = {code: Decimal(1).scaleb(-currency_exponent(code)) for code in set(currencies)}
    factor = pl.col(currency).replace_strict(factors, return_dtype=pl.Decimal(38, AMOUNT_SCALE))
    return (pl.col(amount_minor).cast(pl.Decimal(38, AMOUNT_SCALE)) * factor).alias("amount")


def rule_columns(rows: pl.DataFrame) -> pl.DataFrame:
    """The columns a rule sees (`RULE_COLUMNS`), from rows of a ledger (`ingest_fast.TXN_SCHEMA`)."""
    return rows.select(
        id=pl.col("txn_id"),
        date=pl.col("date"),
        amount=amount_expression(rows["currency"].unique().to_list()),
        currency=pl.col("currency"),
        vendor=pl.col("vendor"),
        memo=pl.col("memo"),
        account=pl.col("account"),
    )


def match_rules(rules: Sequence[CompiledRule], rows: pl.DataFrame) -> Iterator[tuple[int, CompiledRule, pl.Series]]:
    """(number, rule, positions of the rows it flags) per rule that flags any of `rows`, in
    rule order (`rows`: a ledger's rows, `ingest_fast.TXN_SCHEMA`)."""
    if not rules or rows.height == 0:
        return
    masks = rule_columns(rows).select([rule.expression.fill_null(False).alias(f"r{n}") for n, rule in enumerate(rules)])
    for n, rule in enumerate(rules):
        positions = masks[f"r{n}"].arg_true()
        if positions.len():
            yield n, rule, positions

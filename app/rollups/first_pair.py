"""The first-pair test of `app.rollups.query`: which row of a request's pairs counts the
request in its group, when the filters accept several models or providers.

A row of `rollup_daily_set_calls` (or `rollup_daily_user_set_calls`) is one (model, provider)
pair of a request, and carries the request's whole set of pairs as text (`pairs`). A request
whose set holds several accepted pairs must count once per group: on its first accepted pair,
in the order of the sorted filter values. `first_accepted` is that test in SQL (text searches
in `pairs`, `position`); `ordered_values` says how many it orders, which bounds its size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Integer, and_, case, literal, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.warehouse.tables_rollup import PAIR_MID, PAIR_START


def ordered_values(dims: Sequence[str], chosen: Mapping[str, Sequence[str]]) -> int:
    """How many accepted values `first_accepted` orders: it tests each against those before it,
    in as many text searches as this number's pairs."""
    models, providers = len(set(chosen.get("model", ()))), len(set(chosen.get("provider", ())))
    if "model" in dims:
        return providers
    if "provider" in dims:
        return models
    return max(models, 1) * max(providers, 1)


def first_accepted(t: Any, dims: Sequence[str], chosen: Mapping[str, Sequence[str]]) -> Any:
    """`rollup_daily_set_calls` or `rollup_daily_user_set_calls`, whose rows the filters narrow
    to the accepted pairs (those whose model and provider the filters take): the requests of a
    row when it is the one row, of its request's, that counts the request in its group, else 0.

    That row is the first accepted pair of the request's set (every row of a request carries
    the same set) in the order of the sorted filter values, per group: grouped by model, the
    first *of the row's model*; by provider, of its provider. With a filter on models only, the
    first accepted model's row of its first provider (`requests_model`); on providers only,
    likewise (`requests_provider`). `t`: the table's columns."""
    models = sorted(set(chosen.get("model", ())))
    providers = sorted(set(chosen.get("provider", ())))

    def holds(*parts: str | ColumnElement[str]) -> ColumnElement[bool]:
        pieces = [literal(part) if isinstance(part, str) else part for part in parts]
        needle = pieces[0]
        for piece in pieces[1:]:
            needle = needle + piece
        return position(t.pairs, needle) > 0

    count: ColumnElement[int] = t.requests
    if "model" in dims:  # and several providers: the row's model, its first accepted provider
        first = [
            and_(
                t.provider == p,
                *(~holds(PAIR_START, t.model, PAIR_MID + q + PAIR_START) for q in providers[:i]),
            )
            for i, p in enumerate(providers)
        ]
    elif "provider" in dims:  # and several models
        first = [
            and_(
                t.model == m,
                *(~holds(PAIR_START + n + PAIR_MID, t.provider, PAIR_START) for n in models[:i]),
            )
            for i, m in enumerate(models)
        ]
    elif models and providers:
        accepted = [(m, p) for m in models for p in providers]
        first = [
            and_(
                t.model == m,
                t.provider == p,
                *(~holds(PAIR_START + n + PAIR_MID + q + PAIR_START) for n, q in accepted[:i]),
            )
            for i, (m, p) in enumerate(accepted)
        ]
    elif models:
        count = t.requests_model
        first = [
            and_(t.model == m, *(~holds(PAIR_START + n + PAIR_MID) for n in models[:i]))
            for i, m in enumerate(models)
        ]
    else:
        count = t.requests_provider
        first = [
            and_(t.provider == p, *(~holds(PAIR_MID + q + PAIR_START) for q in providers[:i]))
            for i, p in enumerate(providers)
        ]
    return case((or_(*first), count), else_=0)


class position(FunctionElement[int]):
    """Where a text first holds another, from 1 (0: nowhere): no LIKE, so no wildcards to
    escape in model names."""

    type = Integer()
    inherit_cache = True


@compiles(position)
def _instr(element: position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"instr({compiler.process(element.clauses, **kw)})"


@compiles(position, "postgresql")
def _strpos(element: position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clauses, **kw)})"

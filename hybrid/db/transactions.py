"""Which native transaction (:class:`hybrid.db.atomic`) this context is in, per alias.

The lowest layer of :mod:`hybrid.db`: compiling (:mod:`hybrid.db.pool`'s
``prepared_connection`` answers ``get_autocommit()``), the alias checks
(:mod:`hybrid.db.aliases`), running statements (:mod:`hybrid.db.execute`) and the patched
ORM methods (:mod:`hybrid.db.dispatch`) all ask it, and it asks none of them. The block
itself, which opens and ends transactions, is :mod:`hybrid.db.execute`'s.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Transaction", "current_transaction", "enter_transaction", "leave_transaction"]


@dataclass
class Transaction:
    """A native transaction: one pooled aiomysql connection, bound to a context.

    Tasks of the context share it one statement at a time (``lock``); ``ids`` numbers the
    savepoints of nested blocks.
    """

    alias: str
    pool: Any
    conn: Any
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ids: itertools.count[int] = field(default_factory=itertools.count)


_transactions: contextvars.ContextVar[dict[str, Transaction] | None] = contextvars.ContextVar(
    "hybrid_db_transactions", default=None
)


def current_transaction(alias: str) -> Transaction | None:
    """The :class:`hybrid.db.atomic` transaction of this context on ``alias``, if any."""
    txs = _transactions.get()
    return txs.get(alias) if txs else None


def enter_transaction(tx: Transaction) -> contextvars.Token[dict[str, Transaction] | None]:
    """Bind ``tx`` to this context (and the tasks it starts); undo with the token."""
    txs = dict(_transactions.get() or {})
    txs[tx.alias] = tx
    return _transactions.set(txs)


def leave_transaction(token: contextvars.Token[dict[str, Transaction] | None]) -> None:
    """Undo :func:`enter_transaction`."""
    _transactions.reset(token)

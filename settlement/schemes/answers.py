"""What a money-moving flow answers, kept with its posting: the payload a flow stores (its answer, serialised
once) and the answer a repeat of the same key gets back from it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from settlement.errors import IdempotencyConflict, SettlementError
from settlement.ledger import Ledger, OneByOne, Posting, Tx

M = TypeVar("M", bound=BaseModel)


def payload(answer: BaseModel) -> str:
    """The posting's payload: `{"result": <the answer>}` as JSON text."""
    return f'{{"result":{answer.model_dump_json()}}}'


def replay(posting: Posting, model: type[M], kind: str) -> M:
    """The answer kept with `posting`, for a repeat of its key (IdempotencyConflict if the key was used for
    another kind of posting)."""
    result: Any = posting.payload.get("result")
    if posting.kind != kind or result is None:
        raise IdempotencyConflict(f"key {posting.key!r} was used for a {posting.kind}", key=posting.key)
    return model.model_validate({**result, "replayed": posting.replayed})


class Keyed(Protocol):
    key: str
    rhash: str


def repeats(ledger: Ledger, tx: Tx, items: Sequence[Keyed], model: type[M], kind: str) -> tuple[list[Any], list[int]]:
    """For a batch handler: answer the items whose key was posted before (the first answer, or
    IdempotencyConflict when the request differs); return those answers (None for the others) and the
    indices of the items still to do. The same key twice in one batch runs the batch one by one."""
    if len({it.key for it in items}) != len(items):
        raise OneByOne("the same key twice in one batch")  # rare: the store runs them one at a time
    results: list[Any] = [None] * len(items)
    seen = ledger.existing(tx, [it.key for it in items])
    todo = []
    for i, it in enumerate(items):
        posting = seen.get(it.key)
        if posting is None:
            todo.append(i)
        elif posting.request_hash != it.rhash:
            results[i] = IdempotencyConflict(f"key {it.key!r} was already used for a different request", key=it.key)
        else:
            try:
                results[i] = replay(posting, model, kind)
            except SettlementError as e:
                results[i] = e
    return results, todo

"""16 threads post overlapping keys at once: every key is posted once, balances are exact, and a
guarded account is never overdrawn, on both stores."""

from __future__ import annotations

import random
import threading
from collections import Counter

from settlement import errors
from settlement.ledger import AccountKind, Ledger, Transfer

THREADS = 16
KEYS = 120
AMOUNT = 1_000


def test_overlapping_keys_post_once(ledger: Ledger) -> None:
    ledger.open_account("EXT", AccountKind.EXTERNAL)
    ledger.open_account("POOL", AccountKind.POOLED_FUND)
    ledger.open_account("HOSP", AccountKind.HOSPITAL_PAYABLE)
    ledger.open_account("PA", AccountKind.PERSONAL_ACCOUNT)
    funded = KEYS // 3  # only a third of the personal-account debits can be paid
    ledger.post("fund", "allocation", [Transfer("EXT", "PA", funded * AMOUNT)])
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()
    gate = threading.Barrier(THREADS)

    def request(i: int) -> tuple[str, list[Transfer]]:
        if i % 2:  # odd keys also draw on the personal account
            return f"T{i:04d}", [Transfer("POOL", "HOSP", AMOUNT), Transfer("PA", "HOSP", AMOUNT)]
        return f"T{i:04d}", [Transfer("POOL", "HOSP", AMOUNT)]

    def worker(seed: int) -> None:
        order = list(range(KEYS))
        random.Random(seed).shuffle(order)
        gate.wait()
        for i in order:
            key, ts = request(i)
            try:
                p = ledger.post(key, "medical", ts)
                outcome = "replayed" if p.replayed else "posted"
            except errors.InsufficientFunds:
                outcome = "refused"
            with lock:
                outcomes.append((key, outcome))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(outcomes) == THREADS * KEYS
    posted = Counter(k for k, o in outcomes if o == "posted")
    assert all(n == 1 for n in posted.values())  # a key is posted at most once
    refused = {k for k, o in outcomes if o == "refused"}
    assert not refused & set(posted)  # the account only empties: a refused key stays refused
    assert all(ledger.get(k) is not None for k in posted)
    n_posted = len(posted)
    n_pa = sum(1 for k in posted if int(k[1:]) % 2)
    assert n_pa == funded  # the personal account paid exactly what it held, never more
    assert n_posted == KEYS // 2 + funded
    b = ledger.balances(["POOL", "HOSP", "PA", "EXT"])
    assert b == {
        "POOL": -n_posted * AMOUNT,
        "HOSP": (n_posted + n_pa) * AMOUNT,
        "PA": 0,
        "EXT": -funded * AMOUNT,
    }
    ledger.check_invariants()

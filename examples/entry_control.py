"""Per-entry control: invalidate, peek, set and refresh one entry; serve a stale value
while one caller refreshes it.

Run with: python examples/entry_control.py
"""

from __future__ import annotations

import threading
import time

from warp_cache import cache

USERS = {42: "Ada"}


@cache(max_size=256)
def get_user(user_id: int) -> str:
    return USERS[user_id]


class Prices:
    def __init__(self, currency: str) -> None:
        self.currency = currency

    @cache()
    def quote(self, sku: str) -> str:
        return f"9.99 {self.currency} for {sku}"


EDITIONS = [0]


@cache(ttl=0.5, serve_stale=10)
def report() -> str:
    time.sleep(0.3)  # a slow computation
    EDITIONS[0] += 1
    return f"report, edition {EDITIONS[0]}"


def main() -> None:
    print(get_user(42))  # computed: Ada
    USERS[42] = "Ada Lovelace"
    print(get_user.cache_peek(42))  # still the cached "Ada"; peeking counts nothing
    print(get_user.cache_invalidate(42))  # True: the entry is gone
    print(get_user(42))  # computed again: Ada Lovelace
    get_user.cache_set("Grace", 7)  # no call of get_user needed
    print(get_user(7), get_user.cache_info())
    print(get_user.cache_refresh(42))  # recomputed now, stored

    eur = Prices("EUR")
    print(eur.quote("tea"))
    print(eur.quote.cache_invalidate("tea"))  # the entry of (eur, "tea") only

    print(report())  # edition 1, computed in the call
    time.sleep(0.6)  # past ttl: the next calls get the old report at once
    started = time.perf_counter()
    values = []
    threads = [threading.Thread(target=lambda: values.append(report())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - started
    print(f"8 calls past ttl took {took:.3f} s, all got {set(values)}")
    time.sleep(0.4)  # one background refresh has replaced it
    print("now:", report())  # edition 2: the function ran once for the 8 calls


if __name__ == "__main__":
    main()

"""Typed use of warp_cache: the decorator keeps parameter and return types.

`mypy --strict examples/typed_example.py` must pass (tests/test_typing.py runs it): each
`assert_type` fails type checking if the stubs lost a return type (e.g. to Any), and the
calls below are checked against the original parameters.

Run with: python examples/typed_example.py
"""

from __future__ import annotations

import asyncio
from typing import assert_type

from warp_cache import CacheInfo, cache


@cache()
def word_length(word: str) -> int:
    return len(word)


@cache
def scale(value: float, *, factor: float = 2.0) -> float:
    return value * factor


@cache(256, ttl=60.0)
def lookup(name: str, default: int | None = None) -> int | None:
    return {"one": 1, "two": 2}.get(name, default)


@cache(max_size=32)
async def fetch_user(user_id: int) -> dict[str, str]:
    await asyncio.sleep(0)
    return {"id": str(user_id), "name": f"user{user_id}"}


class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    @cache()
    def greet(self, name: str) -> str:
        return f"{self.greeting}, {name}!"


def total_length(words: list[str]) -> int:
    total = 0
    for word in words:
        total += word_length(word)
    return total


def greet_all(greeter: Greeter, names: list[str]) -> list[str]:
    return [greeter.greet(name) for name in names]


async def user_name(user_id: int) -> str:
    user = await fetch_user(user_id)
    assert_type(user, dict[str, str])
    return user["name"]


def main() -> None:
    length: int = word_length("warp")
    assert_type(word_length("cache"), int)
    assert_type(scale(1.5, factor=3.0), float)
    assert_type(lookup("three"), int | None)
    assert_type(Greeter("Hello").greet("mypy"), str)

    print("length:", length, "total:", total_length(["fast", "cache"]))
    print("scaled:", scale(1.5), scale(1.5, factor=3.0))
    print("lookup:", lookup("two"), lookup("three", 0))
    print("greetings:", greet_all(Greeter("Hello"), ["Ada", "Linus"]))
    print("user:", asyncio.run(user_name(7)))

    # Per-entry control takes the function's own parameters.
    assert_type(word_length.cache_invalidate("warp"), bool)
    word_length.cache_set(4, "warp")
    assert_type(word_length.cache_peek("warp"), int)
    assert_type(word_length.cache_refresh("warp"), int)
    assert_type(lookup.cache_peek("two"), int | None)
    greeter = Greeter("Hi")
    greeter.greet.cache_set("Hi there, Ada!", "Ada")
    assert_type(greeter.greet.cache_peek("Ada"), str)
    assert_type(greeter.greet.cache_invalidate("Ada"), bool)
    fetch_user.cache_set({"id": "7", "name": "preset"}, 7)
    assert_type(fetch_user.cache_peek(7), dict[str, str])
    print("refreshed:", asyncio.run(fetch_user.cache_refresh(7)))

    info: CacheInfo = word_length.cache_info()
    hits: int = info.hits
    print("word_length:", info, "hits:", hits)
    word_length.cache_clear()


if __name__ == "__main__":
    main()

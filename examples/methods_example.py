"""Caching methods: `self` is part of the key, and stacking with classmethod works.

Run with: python examples/methods_example.py
"""

from warp_cache import cache


class PriceList:
    def __init__(self, currency: str, rate: float) -> None:
        self.currency = currency
        self.rate = rate

    @cache(max_size=64)
    def price(self, cents: int) -> str:
        """Format a price in this list's currency (each instance caches separately)."""
        print(f"  computing price({cents}) for {self.currency}")
        return f"{cents * self.rate / 100:.2f} {self.currency}"

    @classmethod
    @cache()
    def default(cls) -> "PriceList":
        """One shared default instance per class."""
        print(f"  building the default {cls.__name__}")
        return cls("EUR", 0.92)


def main() -> None:
    usd = PriceList("USD", 1.0)
    print(usd.price(1999))
    print(usd.price(1999))  # hit: not computed again

    eur = PriceList.default()
    print(eur.price(1999))  # another instance: its own entry
    assert PriceList.default() is eur  # the classmethod result is cached too

    print("price:", PriceList.price.cache_info())
    print("default:", PriceList.default.cache_info())


if __name__ == "__main__":
    main()

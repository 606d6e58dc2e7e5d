"""A worker's copy of the addressees it read: used only under the counter value it was read at."""

from __future__ import annotations

from gateway.exchange.addressees import AddresseeCache

H41, H14 = (2, "000.00.00.H41", None), (3, "000.00.00.H14", "another-province")


def test_rows_are_answered_in_the_documents_order_only_under_their_counter_value() -> None:
    cache = AddresseeCache()
    cache.remember(7, [H41, H14])
    assert cache.lookup(7, [H14[1], H41[1]]) == [H14, H41]
    assert cache.lookup(8, [H41[1]]) is None, "the directory changed since"
    assert cache.lookup(6, [H41[1]]) is None, "a request that saw an older directory reads it"
    assert cache.lookup(None, [H41[1]]) is None, "a caller whose authentication did not read the counter"
    assert cache.lookup(7, [H41[1], "000.00.00.H30"]) is None, "one code not read yet: read them all"


def test_a_newer_counter_value_replaces_the_copy_and_an_older_one_is_not_kept() -> None:
    cache = AddresseeCache()
    cache.remember(7, [H41])
    cache.remember(8, [H14])
    assert cache.lookup(8, [H41[1]]) is None, "rows read under 7 went with it"
    cache.remember(7, [H41])
    assert cache.lookup(7, [H41[1]]) is None and cache.lookup(8, [H41[1]]) is None, "read before the change"
    cache.remember(None, [H41])
    assert cache.lookup(8, [H14[1]]) == [H14]


def test_the_copy_starts_over_when_full() -> None:
    cache = AddresseeCache(limit=2)
    cache.remember(1, [H41, H14])
    cache.remember(1, [(4, "000.00.00.H30", None)])
    assert cache.lookup(1, ["000.00.00.H30"]) == [(4, "000.00.00.H30", None)]
    assert cache.lookup(1, [H41[1]]) is None

"""One object per server (nst_core.serve.kept): made once for what it is made of and again when that changes, kept
when a new one cannot be made, and tidied by one thread that ends when the object is no longer the one kept."""

import threading

import pytest

from nst_core.serve.kept import Kept


class Store:
    def __init__(self, where: str):
        if where == "unusable":
            raise OSError(f"cannot use {where}")
        self.where, self.tidied = where, threading.Event()


def tidy_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_made_once_for_what_it_is_made_of_and_again_when_that_changes():
    made = []
    kept = Kept(lambda where: made.append(Store(where)) or made[-1])
    a = kept.get("data")
    assert kept.get("data") is a and made == [a]
    b = kept.get("other")
    assert b is not a and b.where == "other" and kept.get("other") is b
    with pytest.raises(OSError, match="cannot use unusable"):  # a store that cannot be made: the kept one stays
        kept.get("unusable")
    assert kept.get("other") is b and len(made) == 2
    kept.forget()
    c = kept.get("other")
    assert c is not b and len(made) == 3


def test_the_tidy_thread_tidies_the_kept_one_and_ends_when_it_is_replaced_or_forgotten():
    name = "test-kept-tidy"
    kept = Kept(Store, lambda store: store.tidied.set(), name, every=0.01)
    a = kept.get("a")
    assert a.tidied.wait(30)
    [thread] = tidy_threads(name)
    b = kept.get("b")
    assert b.tidied.wait(30)
    thread.join(30)  # the first store's thread has ended: one thread per kept store, never a pile of them
    assert not thread.is_alive() and len(tidy_threads(name)) == 1
    [thread] = tidy_threads(name)
    kept.forget()
    thread.join(30)
    assert not thread.is_alive() and tidy_threads(name) == []


def test_a_failing_tidy_up_is_tried_again():
    calls = []

    def tidy(store):
        calls.append(store)
        if len(calls) < 3:
            raise OSError("disk busy")
        store.tidied.set()

    kept = Kept(Store, tidy, "test-kept-retry", every=0.01)
    store = kept.get("a")
    assert store.tidied.wait(30) and calls[:3] == [store] * 3
    kept.forget()

"""Caller IDs: one subscriber, one E.164 number; everything else is refused with a reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callback_dialer.config import PhoneConfig
from callback_dialer.phone import NumberPolicy, Rejected, Rejection, clean_name, is_e164

policy = NumberPolicy(PhoneConfig(blocklist=("+7800*", "+74950000000")))


@pytest.mark.parametrize(
    "raw",
    [
        "8 916 123-45-67",
        "+7 916 123 45 67",
        "89161234567",
        "+79161234567",
        "9161234567",
        "(916) 123-45-67",
        "007 916 1234567",
    ],
)
def test_one_subscriber_whatever_the_spelling(raw: str) -> None:
    number = policy.normalize(raw)
    assert number and number.e164 == "+79161234567"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", Rejection.EMPTY),
        (None, Rejection.EMPTY),
        ("<unknown>", Rejection.ANONYMOUS),
        ("anonymous", Rejection.ANONYMOUS),
        ("Restricted", Rejection.ANONYMOUS),
        ("withheld", Rejection.ANONYMOUS),
        ("102", Rejection.INTERNAL),
        ("12345", Rejection.INTERNAL),
        ("123456", Rejection.TOO_SHORT),
        ("+7916", Rejection.TOO_SHORT),
        ("+7916123456789012", Rejection.TOO_LONG),
        ("8 800 555-35-35", Rejection.BLOCKED),
        ("+74950000000", Rejection.BLOCKED),
        ("sip:alice@example.com", Rejection.NOT_A_NUMBER),
        ("+7916;Originate", Rejection.NOT_A_NUMBER),
        ('"><img src=x onerror=alert(1)>', Rejection.NOT_A_NUMBER),
        ("79161234567\r\nAction: Originate", Rejection.NOT_A_NUMBER),
    ],
)
def test_garbage_is_refused_with_its_reason(raw, reason) -> None:
    assert policy.normalize(raw) == Rejected(reason)


# Digit strings as a caller ID arrives: bare, with a trunk's or a country's prefix, spaced or
# dashed. Random text would almost never be a number, and the accepting branch never ran.
caller_ids = st.builds(
    lambda prefix, digits, sep: prefix + sep.join([digits[:3], digits[3:6], digits[6:]]),
    st.sampled_from(["", "+", "8", "+7", "007", "+44", "+1"]),
    st.text(alphabet="0123456789", min_size=4, max_size=14),
    st.sampled_from(["", " ", "-"]),
)


@given(caller_ids)
def test_nothing_but_e164_ever_comes_out(raw: str) -> None:
    number = policy.normalize(raw)
    if number:
        assert is_e164(number.e164)
        # The subscriber's own digits survive; only prefixes are rewritten.
        assert number.e164.endswith("".join(ch for ch in raw if ch.isdigit())[-4:])
    else:
        assert number.reason in set(Rejection)


def test_the_property_reaches_both_outcomes() -> None:
    """The generator above yields accepted numbers and refusals, so both asserts run."""
    seen: set[bool] = set()

    @given(caller_ids)
    def collect(raw: str) -> None:
        seen.add(bool(policy.normalize(raw)))

    collect()
    assert seen == {True, False}


def test_national_forms_for_the_trunk() -> None:
    number = policy.normalize("+79161234567")
    assert (number.digits, number.national(), number.nsn()) == (
        "79161234567",
        "89161234567",
        "9161234567",
    )


def test_masked_number_shows_country_and_last_digits() -> None:
    assert policy.normalize("+79161234567").masked() == "+7••••••••67"


def test_names_lose_control_characters_and_placeholders() -> None:
    assert clean_name("Ivan\x00 Petrov\u202e\r\n") == "Ivan Petrov"
    assert clean_name("<unknown>") == ""
    assert clean_name("Жанна Дарк") == "Жанна Дарк"
    assert len(clean_name("x" * 500)) == 64

"""Caller IDs: one subscriber, one E.164 number; everything else is refused with a reason."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callback_dialer.config import PhoneConfig
from callback_dialer.phone import (
    NumberPolicy,
    Rejected,
    Rejection,
    clean_name,
    clean_text,
    is_e164,
    mask_numbers,
)

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


def test_typed_text_loses_controls_and_bidi_but_keeps_its_words() -> None:
    assert clean_text("called\r\nback\x00 by\u202e email\u2028ok\u200b!") == (
        "called back by email ok!"
    )
    assert clean_text("Клиент   написал в чат") == "Клиент   написал в чат"  # typed as is
    assert clean_text("\u202e\u200f \x07") == ""
    assert clean_text("x" * 300, 200) == "x" * 200


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("+79031234567", "+7••••••••67"),
        ("позвоните +7 (903) 765-43-21 срочно", "позвоните +7••••••••21 срочно"),
        ("8 926 000-11-22", "+7••••••••22"),
        ("(916) 123-45-67", "+7••••••••67"),
        ("8.916.123.45.67", "+7••••••••67"),
        ("+7_916_123_45_67", "+7••••••••67"),
        ("+7 916 123 45 67 или 8-916-765-43-21", "+7••••••••67 или +7••••••••21"),
        # Digits of other scripts, full-width, superscript, with invisible characters between.
        ("٨٩١٦١٢٣٤٥٦٧", "+7••••••••67"),
        ("＋７ ９１６ １２３ ４５ ６７", "+7••••••••67"),
        ("⁸⁹¹⁶¹²³⁴⁵⁶⁷", "+7••••••••67"),
        ("+7\u200b916\u202e123\u00ad4567", "+7••••••••67"),
        # Not a phone number, but number-shaped: only the last two digits stay.
        ("76-43-21", "••••21"),
        ("contract 123456", "contract ••••56"),
        # Short numbers, dates and times are no subscriber's number.
        ("agent 101, queue 400, 12345", "agent 101, queue 400, 12345"),
        ("after 2026-11-23 10:00 or 24.11.2026", "after 2026-11-23 10:00 or 24.11.2026"),
        ("1234-56-78", "••••••78"),  # not a real date
    ],
)
def test_anything_number_shaped_is_masked(text: str, shown: str) -> None:
    assert mask_numbers(text, policy) == shown


@given(st.text(alphabet="0123456789 -()+.", min_size=1, max_size=40))
def test_no_six_digits_in_a_row_survive_masking(text: str) -> None:
    shown = mask_numbers(text, policy)
    digits_in_runs = re.findall(r"[\d][\d \-().+]*", shown)
    for run in digits_in_runs:
        assert sum(ch.isdigit() for ch in run) < 6 or re.fullmatch(r"\d{4}-\d{2}-\d{2}", run), (
            text,
            shown,
        )

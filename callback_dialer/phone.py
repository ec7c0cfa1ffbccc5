"""Caller IDs come from strangers: turn them into E.164 numbers, or say why not.

Only the ``e164`` of a ``PhoneNumber`` (digits with a leading ``+``) ever reaches the queue, an
AMI action, a dialplan string or a log line. Display names are cleaned of control characters and
cut short, and so are the notes and reasons people type (``clean_text``): no control, format
(bidi overrides, zero-width) or unassigned characters survive, so nothing stored can reorder a
page, break a spreadsheet or hide a number. Pages escape text on output.

``mask_numbers`` hides every number-shaped run in free text (a name, a note, a reason): digits
in any script (``٩``, ``９``, ``⁹``, ``⑨``) with the separators people write between them
(spaces, dashes, dots, brackets, slashes, invisible characters), six digits or more. A run
the policy reads as a phone number is shown as the number column shows it to the same viewer
(``+7••••••••21``); any other run keeps only its last two digits. A plain date (2026-11-23,
23.11.2026) stays.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import re
import sys
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers

from .config import PhoneConfig


class Rejection(StrEnum):
    EMPTY = "empty"
    ANONYMOUS = "anonymous"
    NOT_A_NUMBER = "not_a_number"
    INTERNAL = "internal"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    INVALID = "invalid"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    e164: str  # "+79161234567"
    region: str | None  # "RU"

    @property
    def digits(self) -> str:
        return self.e164[1:]

    def national(self) -> str:
        """The number as dialled inside its country, trunk prefix included (RU: 8 916 ...)."""
        parsed = phonenumbers.parse(self.e164, None)
        nsn = phonenumbers.national_significant_number(parsed)
        meta = phonenumbers.PhoneMetadata.metadata_for_region(self.region or "", None)
        prefix = (meta.national_prefix or "") if meta else ""
        return prefix + nsn

    def nsn(self) -> str:
        return phonenumbers.national_significant_number(phonenumbers.parse(self.e164, None))

    def masked(self) -> str:
        """For viewers: the country code and the last two digits, the rest hidden."""
        if len(self.e164) <= 5:
            return "+" + "•" * (len(self.e164) - 1)
        parsed = phonenumbers.parse(self.e164, None)
        cc = f"+{parsed.country_code}"
        tail = self.e164[-2:]
        return cc + "•" * (len(self.e164) - len(cc) - 2) + tail


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Rejection

    def __bool__(self) -> bool:
        return False


_ANONYMOUS = {
    "anonymous",
    "unknown",
    "<unknown>",
    "restricted",
    "private",
    "withheld",
    "unavailable",
    "blocked",
    "asterisk",
    "s",
    "*",
    "<anonymous>",
    "anonymous@anonymous.invalid",
}
# Visual separators that people and carriers put into numbers.
_SEPARATORS = re.compile(r"[\s().\-/\u00a0\u2010-\u2015]")
_ALLOWED = re.compile(r"^\+?\d+$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def is_e164(text: str) -> bool:
    """True for the only form of number that may go to Asterisk, a page or a log line."""
    return bool(E164.fullmatch(text))


class NumberPolicy:
    """Normalises caller IDs with the configured region, extensions and blocklist."""

    def __init__(self, config: PhoneConfig) -> None:
        self.config = config
        self._blocked = [re.compile(fnmatch.translate(p)) for p in config.blocklist]

    def normalize(self, raw: str | None) -> PhoneNumber | Rejected:
        if raw is None:
            return Rejected(Rejection.EMPTY)
        text = raw.strip()
        if not text:
            return Rejected(Rejection.EMPTY)
        if text.lower() in _ANONYMOUS:
            return Rejected(Rejection.ANONYMOUS)
        compact = _SEPARATORS.sub("", text)
        if compact.startswith("00"):
            compact = "+" + compact[2:]
        if not _ALLOWED.fullmatch(compact):
            return Rejected(Rejection.NOT_A_NUMBER)
        digits = compact.lstrip("+")
        if len(digits) <= self.config.internal_max_digits and not compact.startswith("+"):
            return Rejected(Rejection.INTERNAL)
        if len(digits) > 15:
            return Rejected(Rejection.TOO_LONG)
        try:
            parsed = phonenumbers.parse(compact, self.config.default_region)
        except phonenumbers.NumberParseException as exc:
            if exc.error_type == phonenumbers.NumberParseException.TOO_SHORT_NSN:
                return Rejected(Rejection.TOO_SHORT)
            if exc.error_type == phonenumbers.NumberParseException.TOO_LONG:
                return Rejected(Rejection.TOO_LONG)
            return Rejected(Rejection.INVALID)
        possible = phonenumbers.is_possible_number_with_reason(parsed)
        if possible == phonenumbers.ValidationResult.TOO_SHORT:
            return Rejected(Rejection.TOO_SHORT)
        if possible == phonenumbers.ValidationResult.TOO_LONG:
            return Rejected(Rejection.TOO_LONG)
        if possible not in (
            phonenumbers.ValidationResult.IS_POSSIBLE,
            phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
        ):
            return Rejected(Rejection.INVALID)
        if self.config.require_valid and not phonenumbers.is_valid_number(parsed):
            return Rejected(Rejection.INVALID)
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if not is_e164(e164):
            return Rejected(Rejection.INVALID)
        if any(p.match(e164) for p in self._blocked):
            return Rejected(Rejection.BLOCKED)
        region = phonenumbers.region_code_for_number(parsed)
        return PhoneNumber(e164=e164, region=region)

    def parse_e164(self, text: str) -> PhoneNumber:
        """A number already in E.164 (from our own queue); ValueError when it is not."""
        if not is_e164(text):
            raise ValueError(f"not an E.164 number: {text!r}")
        parsed = phonenumbers.parse(text, None)
        return PhoneNumber(e164=text, region=phonenumbers.region_code_for_number(parsed))


_NAME_UNKNOWN = {"<unknown>", "unknown", "anonymous", ""}


def clean_name(raw: str | None, limit: int = 64) -> str:
    """A caller's display name fit to store: no control or format characters, at most
    ``limit`` characters, ``""`` for Asterisk's placeholders. Escaping is the page's job."""
    if not raw:
        return ""
    text = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C" or ch == " ").strip()
    if text.lower() in _NAME_UNKNOWN:
        return ""
    return text[:limit]


# Line breaks and tabs become spaces (words must not run together); every other control,
# format (bidi overrides, zero-width joiners), private-use, surrogate or unassigned character
# goes. Zl/Zp (U+2028, U+2029) are separators, not controls, but break lines all the same.
_AS_SPACE = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x1f\x85\u2028\u2029")


def clean_text(raw: str | None, limit: int | None = None) -> str:
    """Free text someone typed (a note, a reason) fit to store and show: on one line, without
    control, format or unassigned characters, stripped, at most ``limit`` characters."""
    if not raw:
        return ""
    if raw.isprintable():  # the usual case, at C speed
        text = raw
    else:
        text = "".join(
            " " if ch in _AS_SPACE else ch
            for ch in raw
            if ch in _AS_SPACE or ch == " " or unicodedata.category(ch)[0] != "C"
        )
        text = re.sub(" {2,}", " ", text)
    text = text.strip()
    return text[:limit] if limit is not None else text


MASK = "\u2022"
_PLUS = "+\uff0b\u207a\u208a"
# Fewer digits than this are no subscriber's number (extensions, amounts, counts, times).
MASK_MIN_DIGITS = 6


@functools.cache
def _number_run() -> re.Pattern[str]:
    # Digits beyond \d: superscripts, subscripts, circled and parenthesised ones (category
    # No). Built once, on first use (a pass over the code points takes a tenth of a second).
    extra = "".join(
        re.escape(chr(c))
        for c in range(sys.maxunicode + 1)
        if not chr(c).isdecimal() and unicodedata.digit(chr(c), None) is not None
    )
    digit = f"[\\d{extra}]"
    # What people and carriers write between digits, invisible characters included (text
    # stored before cleaning may hold them).
    sep = (
        f"[{_PLUS}\\s\\-\u2010-\u2015\u2212\ufe58\ufe63\uff0d().\\[\\]/\\\\_\u00b7\u00ad"
        "\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
    )
    start = f"(?:[{_PLUS}]{sep}*|[(\\[])?"
    return re.compile(f"{start}{digit}(?:{sep}*{digit})*")


# A date written out starting a run stays (2026-11-23 10:00, 23.11.2026).
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?!\d)|(\d{2})[./](\d{2})[./](\d{4})(?!\d)", re.ASCII)


def _is_date(match: re.Match[str]) -> bool:
    y, m, d = (match.group(1), match.group(2), match.group(3))
    if y is None:
        y, m, d = match.group(6), match.group(5), match.group(4)
    try:
        dt.date(int(y), int(m), int(d))
    except ValueError:
        return False
    return True


def _digits(text: str) -> str:
    return "".join(str(d) for ch in text if (d := unicodedata.digit(ch, None)) is not None)


def mask_numbers(text: str, policy: NumberPolicy | None = None) -> str:
    """``text`` with every number-shaped run masked (see the module's docstring)."""
    if not text:
        return text

    def hide(match: re.Match[str]) -> str:
        found = match.group(0)
        date = _DATE.match(found)
        if date is not None and _is_date(date):
            return found[: date.end()] + _number_run().sub(hide, found[date.end() :])
        digits = _digits(found)
        if len(digits) < MASK_MIN_DIGITS:
            return found
        if policy is not None:
            plus = found[0] in _PLUS
            number = policy.normalize(("+" if plus else "") + digits)
            if isinstance(number, PhoneNumber):
                return number.masked()
        return MASK * (len(digits) - 2) + digits[-2:]

    return _number_run().sub(hide, text)

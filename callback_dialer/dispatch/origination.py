"""The Originate action for one callback attempt, built from config templates.

Only validated values reach it: the customer's number is E.164 from our own queue, the agent's
interface comes from Asterisk's QueueStatus and must look like one, labels come from config.
Anything with a line break or outside the expected characters is refused here, so nothing a
caller typed can ever become a header of an AMI action.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from ..ami.asterisk import CALLBACK_CLAIM_VAR, CALLBACK_ID_VAR, CATEGORY_VAR
from ..config import Config
from ..phone import PhoneNumber, is_e164
from .whisper import WhisperFacts, whisper_variables

_INTERFACE = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9@._:+\-/;]+$")
_SAFE_VALUE = re.compile(r"^[^\r\n\x00]*$")
_EXTEN = re.compile(r"^\+?[0-9]+$")


class OriginateInputError(ValueError):
    pass


class FirstLeg(Protocol):
    """What the mode decides (strategies.py): the leg Asterisk dials first."""

    def first_leg(self, values: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        """The Originate's fields for that leg from ``values`` (interface, extension, digits,
        e164, national, nsn, category, label, exten), and the variables it adds."""
        ...


def extension_of(interface: str) -> str:
    """``PJSIP/101`` -> ``101``; ``Local/101@agents/n`` -> ``101``."""
    rest = interface.partition("/")[2]
    return rest.split("@", 1)[0].split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class OriginatePlan:
    fields: dict[str, str | list[str]]
    channel_id: str  # Uniqueid of the first channel Asterisk creates for the attempt
    other_channel_id: str  # Uniqueid of the ;2 half of a Local channel
    action_id: str


def plan_originate(
    config: Config,
    leg: FirstLeg,
    *,
    callback_id: str,
    category: str,
    number: PhoneNumber,
    interface: str,
    trunk: str,
    attempt_no: int,
    whisper: WhisperFacts | None = None,
    claim: str = "",
) -> OriginatePlan:
    if not is_e164(number.e164):
        raise OriginateInputError(f"refusing to dial a number that is not E.164: {number.e164!r}")
    if not _INTERFACE.fullmatch(interface):
        raise OriginateInputError(f"refusing an agent interface of unexpected form: {interface!r}")
    if not re.fullmatch(r"cb-\d+", callback_id):
        raise OriginateInputError(f"unexpected callback id {callback_id!r}")
    dispatch = config.dispatch
    cat = config.category(category)
    label = (cat.label if cat and cat.label else category).replace('"', "'")
    values = {
        "interface": interface.removesuffix("/n"),
        "extension": extension_of(interface),
        "agent": extension_of(interface),
        "digits": number.digits,
        "e164": number.e164,
        "national": number.national(),
        "nsn": number.nsn(),
        "category": category,
        "label": label,
    }
    exten = dispatch.exten.format_map(values)
    if not _EXTEN.fullmatch(exten):
        # It fills {number} in the trunk's dial string: nothing but the number gets there.
        raise OriginateInputError(f"refusing an Exten that is not a number: {exten!r}")
    values["exten"] = exten
    token = secrets.token_hex(3)
    channel_id = f"cbd-{callback_id}-{attempt_no}-{token}"
    other_id = f"{channel_id}-2"
    action_id = f"cbd-originate-{callback_id}-{attempt_no}-{token}"
    variables = [
        f"{CALLBACK_ID_VAR}={callback_id}",
        f"{CATEGORY_VAR}={category}",
        f"CALLBACK_TRUNK={trunk}",
    ]
    try:
        variables.extend(whisper_variables(whisper))
    except ValueError as exc:
        raise OriginateInputError(str(exc)) from None
    if claim:
        if not re.fullmatch(r"[0-9a-f]{1,64}", claim):
            raise OriginateInputError(f"unexpected claim token {claim!r}")
        # The dialplan writes it into the call's fate record (callback-record-fate): a
        # dialer that was not running settles that claim, and no other, from it.
        variables.append(f"{CALLBACK_CLAIM_VAR}={claim}")
    leg_fields, leg_variables = leg.first_leg(values)
    variables.extend(leg_variables)
    fields: dict[str, str | list[str]] = dict(leg_fields)
    fields.update(
        {
            "Variable": variables,
            "ChannelId": channel_id,
            "OtherChannelId": other_id,
            "ActionID": action_id,
            "Async": "true",
        }
    )
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            if not _SAFE_VALUE.fullmatch(item):
                raise OriginateInputError(f"{key} would carry a line break")
    return OriginatePlan(
        fields=fields,
        channel_id=channel_id,
        other_channel_id=other_id,
        action_id=action_id,
    )

"""The whisper: what the agent hears about the callback before talking to the customer.

The dialplan says it (callback-whisper in ivr/dialplan.py: Playback and SayNumber on the
agent's channel, in the agent's language); the dialer only hands it the facts, as channel
variables of the Originate. Those are integers the dialer computes and a language from a fixed
list, never text from a caller, so nothing but digits and "en"/"ru" reaches the dialplan.

Agent first it plays after the agent answered and before the customer is dialled; customer
first (only with ``[whisper] customer_first``) after the agent answered, while the customer
waits (Dial's U option).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import WHISPER_LANGUAGES, WhisperConfig
from ..queue.models import Callback

WHISPER_VAR = "CALLBACK_WHISPER"  # 1: say it, 0: do not
CALLS_VAR = "CALLBACK_CALLS"  # how many times the customer called
WAITED_VAR = "CALLBACK_WAITED"  # minutes since their first missed call
WAITED_HOURS_VAR = "CALLBACK_WAITED_HOURS"  # whole hours when two or more, else 0
LANGUAGE_VAR = "CALLBACK_LANG"  # the language to say it in; absent: the channel's own

# From two hours on, "3 hours ago" says more to an agent than "187 minutes ago".
HOURS_FROM_MINUTES = 120


@dataclass(frozen=True, slots=True)
class WhisperFacts:
    calls: int
    minutes: int
    hours: int
    language: str = ""

    def variables(self) -> list[str]:
        for value in (self.calls, self.minutes, self.hours):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"whisper facts must be whole numbers >= 0, got {value!r}")
        if self.language and self.language not in WHISPER_LANGUAGES:
            raise ValueError(f"whisper language {self.language!r} is not one we ship prompts for")
        out = [
            f"{WHISPER_VAR}=1",
            f"{CALLS_VAR}={self.calls}",
            f"{WAITED_VAR}={self.minutes}",
            f"{WAITED_HOURS_VAR}={self.hours}",
        ]
        if self.language:
            out.append(f"{LANGUAGE_VAR}={self.language}")
        return out


SILENT = [f"{WHISPER_VAR}=0"]


def whisper_facts(
    config: WhisperConfig, mode: str, callback: Callback, agent: str, now: float
) -> WhisperFacts | None:
    """The facts to whisper for this attempt, or None when this mode whispers nothing."""
    if not config.enabled or (mode == "customer_first" and not config.customer_first):
        return None
    minutes = max(0, int((now - callback.first_missed) // 60))
    hours = minutes // 60 if minutes >= HOURS_FROM_MINUTES else 0
    return WhisperFacts(
        calls=max(1, int(callback.missed_count)),
        minutes=minutes,
        hours=hours,
        language=config.language_for(agent),
    )


def whisper_variables(facts: WhisperFacts | None) -> list[str]:
    return facts.variables() if facts is not None else list(SILENT)

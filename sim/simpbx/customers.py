"""What a called customer does when a callback reaches their phone.

- ``LastDigitCarrier``: the carrier of the captures, where the number's last digit decides
  (1 answers, 2 busy, 3 no answer, 4 congestion, 5 answers and hangs up at once).
- ``RandomCustomers``: answer, busy, no answer, unreachable with given probabilities, after a
  random ring, talking a random time; seeded.
- ``PerNumber``: a fixed response for some numbers, another behaviour for the rest.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from callback_dialer.ami.asterisk import DialStatus

from .model import CustomerBehaviour, CustomerResponse


@dataclass(frozen=True, slots=True)
class LastDigitCarrier:
    """``talk``: how long digit 1 talks (the captures' carrier hangs up after about 5.5 s).
    Other last digits answer too."""

    talk: float = 5.5
    ring: float = 0.0

    def respond(self, number: str, now: float) -> CustomerResponse:
        digit = number[-1:] if number else ""
        if digit == "2":
            return CustomerResponse(DialStatus.BUSY, ring=self.ring)
        if digit == "3":
            return CustomerResponse(DialStatus.NOANSWER, ring=self.ring)
        if digit == "4":
            return CustomerResponse(DialStatus.CONGESTION, ring=self.ring)
        if digit == "5":
            return CustomerResponse(DialStatus.ANSWER, ring=self.ring, talk=0.3)
        return CustomerResponse(DialStatus.ANSWER, ring=self.ring, talk=self.talk)


@dataclass(slots=True)
class RandomCustomers:
    """Probabilities of each outcome (the rest: answered); ring and talk times lognormal."""

    rng: random.Random = field(default_factory=lambda: random.Random(0))
    busy: float = 0.07
    no_answer: float = 0.15
    unreachable: float = 0.03
    congestion: float = 0.0
    ring_median: float = 8.0
    talk_median: float = 120.0
    talk_sigma: float = 0.7

    def respond(self, number: str, now: float) -> CustomerResponse:
        roll = self.rng.random()
        ring = max(1.0, self.rng.lognormvariate(math.log(self.ring_median), 0.5))
        for status, share in (
            (DialStatus.BUSY, self.busy),
            (DialStatus.NOANSWER, self.no_answer),
            (DialStatus.CHANUNAVAIL, self.unreachable),
            (DialStatus.CONGESTION, self.congestion),
        ):
            if roll < share:
                if status in (DialStatus.BUSY, DialStatus.CHANUNAVAIL, DialStatus.CONGESTION):
                    ring = min(ring, 2.0)
                return CustomerResponse(status, ring=ring)
            roll -= share
        talk = max(3.0, self.rng.lognormvariate(math.log(self.talk_median), self.talk_sigma))
        return CustomerResponse(DialStatus.ANSWER, ring=ring, talk=talk)


@dataclass(slots=True)
class PerNumber:
    """Fixed responses by number (as dialled, or its last ten digits); ``rest`` for others."""

    fixed: dict[str, CustomerResponse]
    rest: CustomerBehaviour = field(default_factory=LastDigitCarrier)

    def respond(self, number: str, now: float) -> CustomerResponse:
        found = self.fixed.get(number) or self.fixed.get(number[-10:])
        return found if found is not None else self.rest.respond(number, now)

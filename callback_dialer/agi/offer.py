"""The IVR offer's FastAGI scripts, as the generated dialplan calls them
(callback_dialer/ivr/dialplan.py, context ``callback-offer``):

- ``door,<queue>,<category>``: at the queue's door. ``CALLBACK_OFFER=yes`` when the expected
  wait there is longer than ``[ivr] offer_after`` (``CALLBACK_WAIT``, seconds).
- ``offer,<category>,<reason>``: ``CALLBACK_ETA`` (minutes, as promised) and
  ``CALLBACK_READBACK``: the caller ID as the caller dials it (RU: 89161234567), "" when the
  caller ID is no number we can call (then the caller is asked to type one).
- ``number,<typed digits>``: ``CALLBACK_TYPED_OK=1``, ``CALLBACK_READBACK`` and
  ``CALLBACK_TYPED_NUMBER`` (its E.164 form) for a number the phone policy accepts in
  ``[phone] default_region``; ``0`` and ``CALLBACK_PROBLEM`` (a reason word) otherwise.
- ``register,<category>,<reason>[,<CALLBACK_TYPED_NUMBER>]``: the callback is registered (the call
  tracker emits the missed call now; the sink writes it behind, spooled if Redis is away).
  ``CALLBACK_REGISTERED=1``, ``CALLBACK_ETA``, ``CALLBACK_NUMBER`` (E.164 form of the number
  we will call, for the user event that tells the other dialers).

Every value set here is digits, a word of ours or a number: never the caller's text. Every
answer comes from memory; nothing here awaits Redis.
"""

from __future__ import annotations

import math
import re

from ..clock import Clock
from ..config import Config
from ..detect.tracker import CallTracker
from ..dispatch.estimate import Estimator
from ..logs import get_logger
from ..phone import NumberPolicy, PhoneNumber
from .protocol import AgiRequest
from .server import AgiScript

log = get_logger(__name__)

_TYPED = re.compile(r"^[0-9*#]{0,32}$")
_E164 = re.compile(r"^\+[0-9]{6,15}$")
_WORD = re.compile(r"^[A-Za-z0-9_-]{0,40}$")


class OfferScripts:
    def __init__(
        self, config: Config, clock: Clock, tracker: CallTracker, estimator: Estimator
    ) -> None:
        self.config = config
        self.clock = clock
        self.tracker = tracker
        self.estimator = estimator
        self.numbers = NumberPolicy(config.phone)
        self.categories = set(config.category_names())
        self.offer_after = config.ivr.offer_after

    def scripts(self) -> dict[str, AgiScript]:
        return {
            "door": AgiScript(self.door, {"CALLBACK_OFFER": "no", "CALLBACK_WAIT": ""}),
            "offer": AgiScript(self.offer, {"CALLBACK_ETA": "", "CALLBACK_READBACK": ""}),
            "number": AgiScript(
                self.number,
                {
                    "CALLBACK_TYPED_OK": "0",
                    "CALLBACK_READBACK": "",
                    "CALLBACK_TYPED_NUMBER": "",
                    "CALLBACK_PROBLEM": "error",
                },
            ),
            "register": AgiScript(self.register, {"CALLBACK_REGISTERED": "0"}),
        }

    # ------------------------------------------------------------------ input

    def _category(self, request: AgiRequest, index: int) -> str:
        given = request.arg(index).strip()
        if given in self.categories:
            return given
        known = self.tracker.category_of(request.uniqueid)
        if given and given != "unknown":
            log.warning(
                "FastAGI request names an unknown category; using the call's",
                given=given[:40],
                category=known or self.config.detection.fallback_category,
            )
        return known or self.config.detection.fallback_category

    @staticmethod
    def _word(request: AgiRequest, index: int, default: str) -> str:
        value = request.arg(index).strip()
        return value.upper() if value and _WORD.match(value) else default

    def _caller(self, request: AgiRequest) -> PhoneNumber | None:
        known = self.tracker.caller_number(request.uniqueid)
        if known is not None:
            return known
        number = self.numbers.normalize(request.caller_id)
        return number if isinstance(number, PhoneNumber) else None

    def _typed(self, raw: str) -> PhoneNumber | str:
        """The typed digits (or the E.164 form the number script gave back) as a number,
        or the one-word reason it is not one."""
        if _E164.match(raw):
            number = self.numbers.normalize(raw)
            return number if isinstance(number, PhoneNumber) else number.reason.value
        if not _TYPED.match(raw):
            return "not_digits"
        digits = raw.replace("#", "")
        if "*" in digits:
            return "not_digits"
        number = self.numbers.normalize(digits)
        if isinstance(number, PhoneNumber):
            return number
        return number.reason.value

    def _readback(self, number: PhoneNumber) -> str:
        # As the caller dials it: the national form at home, the full digits abroad.
        if number.region == self.config.phone.default_region:
            return number.national()
        return number.digits

    # ------------------------------------------------------------------ scripts

    def door(self, request: AgiRequest) -> dict[str, str]:
        queue = request.arg(1).strip()
        if queue not in self.config.dispatch.queues:
            log.warning("FastAGI door check for an unknown queue", queue=queue[:40])
            return {"CALLBACK_OFFER": "no", "CALLBACK_WAIT": ""}
        wait = self.estimator.queue_wait(queue, call_id=request.uniqueid)
        offer = wait > self.offer_after
        shown = "" if math.isinf(wait) else str(int(wait))
        log.info(
            "queue door",
            call_id=request.uniqueid,
            queue=queue,
            expected_wait=shown or "no agent",
            offer=offer,
        )
        return {"CALLBACK_OFFER": "yes" if offer else "no", "CALLBACK_WAIT": shown}

    def offer(self, request: AgiRequest) -> dict[str, str]:
        category = self._category(request, 1)
        estimate = self.estimator.for_new(category, call_id=request.uniqueid)
        caller = self._caller(request)
        log.info(
            "callback offered",
            call_id=request.uniqueid,
            category=category,
            reason=self._word(request, 2, "OFFER"),
            eta_minutes=estimate.minutes,
            expected_seconds=round(estimate.seconds),
            ahead=estimate.ahead,
            live=estimate.live,
            agents=estimate.agents,
            caller_id_usable=caller is not None,
        )
        return {
            "CALLBACK_ETA": str(estimate.minutes),
            "CALLBACK_READBACK": self._readback(caller) if caller is not None else "",
        }

    def number(self, request: AgiRequest) -> dict[str, str]:
        typed = self._typed(request.arg(1).strip())
        if isinstance(typed, PhoneNumber):
            return {
                "CALLBACK_TYPED_OK": "1",
                "CALLBACK_READBACK": self._readback(typed),
                "CALLBACK_TYPED_NUMBER": typed.e164,
                "CALLBACK_PROBLEM": "",
            }
        log.info("typed number refused", call_id=request.uniqueid, problem=typed)
        return {
            "CALLBACK_TYPED_OK": "0",
            "CALLBACK_READBACK": "",
            "CALLBACK_TYPED_NUMBER": "",
            "CALLBACK_PROBLEM": typed,
        }

    def register(self, request: AgiRequest) -> dict[str, str]:
        category = self._category(request, 1)
        reason = self._word(request, 2, "OFFER")
        raw = request.arg(3).strip()
        typed: PhoneNumber | None = None
        if raw:
            checked = self._typed(raw)
            if not isinstance(checked, PhoneNumber):
                # The dialplan only registers numbers the "number" script accepted: this is
                # a hand-written or broken dialplan. Nothing is registered.
                log.warning(
                    "FastAGI register with an unusable number; nothing registered",
                    call_id=request.uniqueid,
                    problem=checked,
                )
                return {"CALLBACK_REGISTERED": "0"}
            typed = checked
        estimate = self.estimator.for_new(category, call_id=request.uniqueid)
        promised_by = self.clock.now() + estimate.minutes * 60
        fact = self.tracker.accept_offer(
            request.uniqueid,
            reason=reason,
            category=category,
            typed=typed,
            channel=request.channel,
            caller_id=request.caller_id,
            at=self.clock.now(),
            promised_by=promised_by,
        )
        if fact is None:
            log.warning(
                "offer taken but there is no number to call back",
                call_id=request.uniqueid,
            )
            return {"CALLBACK_REGISTERED": "0"}
        log.info(
            "callback registered from the IVR",
            call_id=request.uniqueid,
            number=fact.number,
            caller_id=fact.caller_id,
            category=fact.category,
            eta_minutes=estimate.minutes,
            promised_by=round(promised_by),
        )
        return {
            "CALLBACK_REGISTERED": "1",
            "CALLBACK_ETA": str(estimate.minutes),
            "CALLBACK_NUMBER": fact.number,
        }

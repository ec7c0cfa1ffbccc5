"""A caller's explicit callback request, raised by the dialplan as a user event:

    UserEvent(CallbackRequested,Reason: KEYPRESS,Category: ${CALLBACK_CATEGORY})

``Reason`` KEYPRESS (the caller pressed ``*``) makes the source ``explicit``; anything else
(``${QUEUESTATUS}``: TIMEOUT, FULL, JOINEMPTY, LEAVEEMPTY, ...) means the queue gave up on the
caller and the dialplan offered a callback: source ``timeout``. ``DOOR`` is the generated
dialplan's offer at the queue's door (the expected wait was longer than ``[ivr] offer_after``),
taken by the caller: ``explicit``. A ``Number`` header (the generated dialplan's, once the caller
took the offer) names the number to call back instead of the caller ID; it is validated again.
"""

from __future__ import annotations

from ..queue.models import Source

# DOOR: the caller took the offer made at the queue's door (the expected wait was too long).
EXPLICIT_REASONS = frozenset(
    {"KEYPRESS", "REQUEST", "EXPLICIT", "CALLBACK", "DTMF", "DOOR", "OFFER"}
)


def source_for_request(reason: str) -> Source:
    return Source.EXPLICIT if reason.strip().upper() in EXPLICIT_REASONS else Source.TIMEOUT

"""A caller's explicit callback request, raised by the dialplan as a user event:

    UserEvent(CallbackRequested,Reason: KEYPRESS,Category: ${CALLBACK_CATEGORY})

``Reason`` KEYPRESS (the caller pressed ``*``) makes the source ``explicit``; anything else
(``${QUEUESTATUS}``: TIMEOUT, FULL, JOINEMPTY, LEAVEEMPTY, ...) means the queue gave up on the
caller and the dialplan offered a callback: source ``timeout``.
"""

from __future__ import annotations

from ..queue.models import Source

EXPLICIT_REASONS = frozenset({"KEYPRESS", "REQUEST", "EXPLICIT", "CALLBACK", "DTMF"})


def source_for_request(reason: str) -> Source:
    return Source.EXPLICIT if reason.strip().upper() in EXPLICIT_REASONS else Source.TIMEOUT

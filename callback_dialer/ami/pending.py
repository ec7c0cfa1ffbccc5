"""The actions in flight on the AMI link: ActionID -> what is waiting for its answer.

One table, ours, for every action the client sends. An entry is made before the action is
written and leaves when its answer is complete, when it times out (the caller stops waiting), or
when the link drops (``fail_all``: nothing is kept for re-sending, panoramisk fault 8).

What completes an entry:
- a single action (Ping, Hangup, Login, an ``Async`` Originate): its response, the first message
  with its ActionID that is not an event. An event with that ActionID (``OriginateResponse``)
  is not the answer: it goes on to the handlers (fault 11);
- a list action (QueueStatus, CoreShowChannels, Status): its response, then the events with its
  ActionID up to the one marked ``EventList: Complete``. A refusal (``Response: Error``) or a
  response that announces no list ends it at once. The list's events go on to the handlers too
  (the agent book learns the members from the QueueMember events as they arrive).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from .frames import AmiMessage

SUCCESS = ("Success", "Follows", "Goodbye")


@dataclass(eq=False, slots=True)
class PendingAction:
    action_id: str
    name: str  # the action, for error messages
    is_list: bool
    done: asyncio.Future[None]
    response: AmiMessage | None = None
    items: list[AmiMessage] = field(default_factory=list)  # a list's events, Complete excluded
    _ended: bool = False  # the list's Complete event came (before the response, in theory)


def _announces_list(response: AmiMessage) -> bool:
    # Asterisk marks a list with ``EventList: start``; the older "... will follow" text is
    # accepted too, as panoramisk did.
    return (
        response.get("EventList").lower() == "start"
        or "will follow" in response.get("Message").lower()
    )


class PendingActions:
    def __init__(self) -> None:
        self._table: dict[str, PendingAction] = {}

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, action_id: object) -> bool:
        return action_id in self._table

    def add(self, action_id: str, name: str, *, is_list: bool) -> PendingAction:
        if action_id in self._table:
            # Two waiters on one ActionID: the answer could only reach one of them.
            raise ValueError(f"ActionID {action_id!r} is already in flight")
        pending = PendingAction(
            action_id, name, is_list, asyncio.get_running_loop().create_future()
        )
        self._table[action_id] = pending
        return pending

    def discard(self, pending: PendingAction) -> None:
        """The caller stopped waiting (timeout, cancellation): a late answer reaches no one."""
        if self._table.get(pending.action_id) is pending:
            del self._table[pending.action_id]
        if not pending.done.done():
            pending.done.cancel()

    def take(self, message: AmiMessage) -> bool:
        """Give ``message`` to the action it answers, if any. True when it was that action's
        response (nobody else needs it); False for everything else, list events included."""
        action_id = message.fields.get("ActionID")
        if not action_id:
            return False
        pending = self._table.get(action_id)
        if pending is None:
            return False
        if "Event" in message.fields:
            if pending.is_list:
                if message.fields.get("EventList", "").lower() == "complete":
                    pending._ended = True
                else:
                    pending.items.append(message)
                if pending.response is not None and pending._ended:
                    self._finish(pending)
            return False
        if pending.response is None:
            pending.response = message
            if (
                not pending.is_list
                or pending._ended
                or message.fields.get("Response") not in SUCCESS
                or not _announces_list(message)
            ):
                self._finish(pending)
            return True
        return False  # a second response to one action: not ours to swallow

    def fail_all(self, error: Callable[[], Exception]) -> None:
        """The link dropped: every waiting action learns it now (``error()`` is raised to
        each), none is kept for later."""
        table, self._table = self._table, {}
        for pending in table.values():
            if not pending.done.done():
                pending.done.set_exception(error())

    def _finish(self, pending: PendingAction) -> None:
        del self._table[pending.action_id]
        if not pending.done.done():
            pending.done.set_result(None)

"""Bytes from Asterisk -> messages -> handlers: the path shared by a live link and a recording.

A live connection feeds what it reads from its socket; a capture file feeds its recorded
``in`` frames. Both go through the same decoder and the same router, so a replayed capture
proves what the live dialer would conclude. A recording taps the same decoder (``on_raw``): it
writes each record exactly as it crossed the wire, framed once, by the framer the handlers use.
"""

from __future__ import annotations

from collections.abc import Callable

from ..logs import get_logger
from .frames import AmiMessage, FrameDecoder
from .router import EventRouter

log = get_logger(__name__)

# Returns True when the message answered an action of ours and needs no handler.
ResponseHook = Callable[[AmiMessage], bool]
# Given the raw text of every record (greeting, frames, junk), in wire order: a recorder.
RawTap = Callable[[str], None]


class AmiStream:
    def __init__(
        self,
        router: EventRouter,
        on_response: ResponseHook | None = None,
        on_raw: RawTap | None = None,
    ) -> None:
        self.router = router
        self.decoder = FrameDecoder()
        self.on_response = on_response
        self.on_raw = on_raw
        self._reported_bad = 0

    def feed(self, data: bytes, received_at: float) -> int:
        """Decode and dispatch everything complete in ``data``; returns messages handled."""
        count = 0
        if self.on_raw is None:
            for message in self.decoder.iter_feed(data, received_at):
                count += 1
                self._handle(message)
        else:
            for raw, message in self.decoder.iter_frames(data, received_at):
                self._record(raw)
                if message is not None:
                    count += 1
                    self._handle(message)
        self._report_damage()
        return count

    def _handle(self, message: AmiMessage) -> None:
        try:
            if self.on_response is not None and self.on_response(message):
                return
            if "Event" in message.fields:
                self.router.dispatch(message)
        except Exception:
            log.exception("AMI message could not be handled; skipped", ami_event=message.event)

    def _record(self, raw: str) -> None:
        assert self.on_raw is not None
        try:
            self.on_raw(raw)
        except Exception:  # a recording that fails must not cost the handlers a message
            log.exception("AMI traffic could not be recorded")

    def reset(self) -> None:
        self.decoder.reset()
        self._report_damage()

    def _report_damage(self) -> None:
        stats = self.decoder.stats
        bad = stats.bad_lines + stats.dropped_frames + stats.oversized_frames
        if bad != self._reported_bad:
            log.warning(
                "malformed AMI input skipped",
                bad_lines=stats.bad_lines,
                dropped_frames=stats.dropped_frames,
                oversized_frames=stats.oversized_frames,
                last_reason=stats.reasons[-1] if stats.reasons else "",
            )
            self._reported_bad = bad

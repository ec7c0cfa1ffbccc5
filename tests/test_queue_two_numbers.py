"""A callback to a number typed in the IVR answers to the caller ID too (real Redis)."""

from __future__ import annotations

import pytest

from callback_dialer.queue.models import Source, State
from callback_dialer.queue.store import CallbackQueue, QueueInputError

CALLER = "+79161234567"
TYPED = "+79031234564"
OTHER = "+74951234563"


async def typed(queue: CallbackQueue, call_id: str = "offer-1", ago: float = 30) -> str:
    result = await queue.add_missed(
        number=TYPED,
        caller_id=CALLER,
        category="support",
        source=Source.EXPLICIT,
        missed_at=queue.clock.now() - ago,
        call_id=call_id,
    )
    return result.id


async def test_the_callback_goes_to_the_typed_number_and_keeps_the_caller_id(
    queue: CallbackQueue,
) -> None:
    cb = await queue.get(await typed(queue))
    assert cb is not None
    assert (cb.number, cb.caller_id) == (TYPED, CALLER)
    public = cb.to_public()
    assert (public["number"], public["caller_id"]) == (TYPED, CALLER)
    assert [c.id for c in await queue.for_number(CALLER)] == [cb.id]  # found by either
    assert [c.id for c in await queue.for_number(TYPED)] == [cb.id]


async def test_a_later_call_from_the_caller_id_merges_into_it(queue: CallbackQueue) -> None:
    first = await typed(queue)
    again = await queue.add_missed(
        number=CALLER,
        category="support",
        source=Source.ABANDON,
        missed_at=queue.clock.now(),
        call_id="later",
    )
    assert (again.result, again.id) == ("merged", first)
    cb = await queue.get(first)
    assert cb is not None and cb.number == TYPED and cb.missed_count == 2


async def test_a_later_call_from_the_typed_number_merges_into_it(queue: CallbackQueue) -> None:
    first = await typed(queue)
    again = await queue.add_missed(
        number=TYPED,
        category="support",
        source=Source.ABANDON,
        missed_at=queue.clock.now(),
        call_id="later",
    )
    assert (again.result, again.id) == ("merged", first)


@pytest.mark.parametrize("through", [CALLER, TYPED])
async def test_either_number_getting_through_closes_it(queue: CallbackQueue, through) -> None:
    first = await typed(queue)
    resolved = await queue.resolve_number(through, "served_inbound")
    assert resolved.closed and resolved.id == first
    cb = await queue.get(first)
    assert cb is not None and cb.state is State.DONE
    # Closed for both numbers: a new missed call from either opens a new callback.
    for number in (CALLER, TYPED):
        assert await queue.open_for(number) is None


async def test_typing_a_number_on_an_open_callback_of_the_caller_id_redirects_it(
    queue: CallbackQueue,
) -> None:
    earlier = await queue.add_missed(
        number=CALLER,
        category="support",
        source=Source.ABANDON,
        missed_at=queue.clock.now() - 300,
        call_id="abandon",
    )
    merged = await typed(queue, call_id="offer")
    assert merged == earlier.id
    cb = await queue.get(merged)
    assert cb is not None
    assert (cb.number, cb.caller_id, cb.missed_count) == (TYPED, CALLER, 2)
    assert cb.first_missed == pytest.approx(queue.clock.now() - 300)  # waited since then
    history = [h.event for h in await queue.history(merged)]
    assert "number_changed" in history
    # The typed number answers for it now, and so does the caller ID.
    assert (await queue.open_for(TYPED)).id == merged  # type: ignore[union-attr]
    assert (await queue.open_for(CALLER)).id == merged  # type: ignore[union-attr]


async def test_a_caller_id_owned_by_another_open_callback_is_left_to_it(
    queue: CallbackQueue,
) -> None:
    # The typed number already has its own open callback; the caller ID has another one.
    own = await queue.add_missed(
        number=TYPED,
        category="support",
        source=Source.ABANDON,
        missed_at=queue.clock.now() - 100,
        call_id="own",
    )
    caller_own = await queue.add_missed(
        number=CALLER,
        category="support",
        source=Source.ABANDON,
        missed_at=queue.clock.now() - 90,
        call_id="caller-own",
    )
    merged = await typed(queue, call_id="offer")
    assert merged == own.id
    assert (await queue.open_for(CALLER)).id == caller_own.id  # type: ignore[union-attr]


async def test_the_same_caller_id_typed_as_the_number_is_one_number(
    queue: CallbackQueue,
) -> None:
    result = await queue.add_missed(
        number=CALLER,
        caller_id=CALLER,
        category="support",
        source=Source.EXPLICIT,
        missed_at=queue.clock.now(),
        call_id="same",
    )
    cb = await queue.get(result.id)
    assert cb is not None and cb.caller_id == ""


async def test_a_caller_id_that_is_not_e164_is_refused(queue: CallbackQueue) -> None:
    with pytest.raises(QueueInputError, match="caller ID"):
        await queue.add_missed(
            number=TYPED,
            caller_id="89161234567",
            category="support",
            source=Source.EXPLICIT,
            missed_at=queue.clock.now(),
        )


async def test_the_events_stream_carries_the_caller_id(queue: CallbackQueue) -> None:
    await typed(queue)
    entries = await queue.redis.xrange(queue.keys.events())
    fields = {k.decode(): v.decode() for k, v in entries[-1][1].items()}
    assert (fields["number"], fields["caller_id"]) == (TYPED, CALLER)


async def test_a_webhook_names_both_numbers(queue: CallbackQueue) -> None:
    import datetime as dt

    from callback_dialer.jobs.webhooks import build_document

    callback_id = await typed(queue)
    entry_id, raw = (await queue.redis.xrange(queue.keys.events()))[-1]
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    doc = build_document(
        entry_id.decode(),
        "created",
        fields,
        await queue.get(callback_id),
        installation="test",
        tz=dt.UTC,
    )
    assert (doc["number"], doc["caller_id"]) == (TYPED, CALLER)
    assert (doc["callback"]["number"], doc["callback"]["caller_id"]) == (TYPED, CALLER)


async def test_the_first_promise_is_kept_beside_the_callback(queue: CallbackQueue) -> None:
    now = queue.clock.now()
    first = await queue.add_missed(
        number=CALLER,
        category="support",
        source=Source.EXPLICIT,
        missed_at=now,
        call_id="promised",
        promised_by=now + 600,
    )
    await queue.add_missed(
        number=CALLER,
        category="support",
        source=Source.EXPLICIT,
        missed_at=now + 60,
        call_id="promised-again",
        promised_by=now + 1800,
    )
    cb = await queue.get(first.id)
    assert cb is not None and cb.promised_by == pytest.approx(now + 600)
    assert cb.to_public()["promised_by"] == pytest.approx(now + 600)
    plain = await queue.add_missed(
        number=OTHER, category="support", source=Source.ABANDON, missed_at=now, call_id="plain"
    )
    assert (await queue.get(plain.id)).promised_by is None  # type: ignore[union-attr]

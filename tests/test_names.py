"""Caller names as Asterisk writes them: channel events C-escape them (ast_escape_c), so a
caller called Иван "Ваня" Петров arrives as Иван \\"Ваня\\" Петров. The dialer stores the
name the caller has, not the wire's spelling."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st
from simpbx.model import CallerScript
from simpbx.scenarios import SCENARIOS, _at, _pause_all, play

from callback_dialer.ami.asterisk import escape_c, unescape_c
from callback_dialer.ami.capture import CaptureSource
from callback_dialer.clock import ManualClock
from callback_dialer.detect.facts import MissedCall
from callback_dialer.detect.pipeline import build_pipeline

NAME = 'Иван "Ваня" Петров \\ O\'Brien?'


def test_escape_c_writes_what_asterisk_writes() -> None:
    # ast_escape_c's table: \a \b \f \n \r \t \v \\ \' \" \?
    assert escape_c('Иван "Ваня"') == 'Иван \\"Ваня\\"'
    assert escape_c("a\\b'c?\t") == "a\\\\b\\'c\\?\\t"


@given(st.text(max_size=60))
def test_unescape_c_undoes_escape_c(text: str) -> None:
    assert unescape_c(escape_c(text)) == text


def test_a_backslash_before_anything_else_is_kept() -> None:
    assert unescape_c("C:\\x and \\") == "C:\\x and \\"


async def test_a_quoted_name_is_stored_as_the_caller_wrote_it(config, queue, tmp_path) -> None:
    def abandon(pbx, rec) -> None:
        _pause_all(pbx, "lunch")
        script = CallerScript(choice="1", patience=8.25, name=NAME)
        _at(pbx, 0.006, pbx.place_call, "+79161234561", script)

    scenario = dataclasses.replace(SCENARIOS["abandon_in_queue"], script=abandon)
    recorded = (await play(scenario)).write(tmp_path / "quoted.jsonl")
    wire = recorded.read_text("utf-8")
    # On the wire as Asterisk sends it (JSON doubles each backslash once more) ...
    assert 'CallerIDName: Иван \\\\\\"Ваня\\\\\\" Петров \\\\\\\\ O\\\\\'Brien\\\\?' in wire
    clock = ManualClock()
    pipeline = build_pipeline(config, clock, queue)
    facts: list[object] = []
    pipeline.tracker.emit = facts.append
    await CaptureSource(recorded, pipeline.stream(), clock).run()
    # ... and in the missed call that goes to Redis as the caller is called.
    assert [(f.number, f.name) for f in facts if isinstance(f, MissedCall)] == [
        ("+79161234561", NAME)
    ]

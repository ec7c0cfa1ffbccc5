"""Any trunk: each [[dispatch.trunks]] entry's dial string, checked at load and rendered into the
generated dialplan, where only the dialer's validated number (the Originate's Exten) fills it."""

from __future__ import annotations

import re

import pytest

from callback_dialer.config import ConfigError, parse_config
from callback_dialer.dispatch.origination import OriginateInputError, plan_originate
from callback_dialer.dispatch.strategies import strategy_for
from callback_dialer.ivr.dialplan import render_dialplan
from callback_dialer.phone import NumberPolicy


def _config(*trunks: dict, **dispatch):
    return parse_config({"dispatch": {"trunks": list(trunks), **dispatch}}, "test")


def _context(text: str, name: str) -> str:
    """The lines of one dialplan context."""
    match = re.search(rf"^\[{re.escape(name)}\]\n(.*?)(?=^\[|\Z)", text, re.S | re.M)
    assert match, f"no [{name}] in the dialplan"
    return match.group(1)


@pytest.mark.parametrize(
    ("template", "dial"),
    [
        ("PJSIP/{number}@{trunk}", "Dial(PJSIP/${EXTEN}@carrier,30)"),
        ("IAX2/{trunk}/{number}", "Dial(IAX2/carrier/${EXTEN},30)"),
        ("SIP/{trunk}/{number}", "Dial(SIP/carrier/${EXTEN},30)"),
        ("DAHDI/g0/{number}", "Dial(DAHDI/g0/${EXTEN},30)"),
        ("Local/{number}@from-carrier/n", "Dial(Local/${EXTEN}@from-carrier/n,30)"),
    ],
    ids=["pjsip", "iax2", "chan_sip", "dahdi", "local"],
)
def test_each_technology_dials_the_customer_with_its_trunk_template(template, dial) -> None:
    text = render_dialplan(_config({"name": "carrier", "dial": template}))
    for context in ("callback-outbound", "callback-customer"):
        body = _context(text, context)
        assert ' same => n,GotoIf($["${CALLBACK_TRUNK}" = "carrier"]?trunk1)' in body
        assert f" same => n(trunk1),{dial}\n" in body
        assert "PJSIP/${EXTEN}@${CALLBACK_TRUNK}" not in body


def test_the_default_trunk_keeps_dialling_pjsip_at_the_trunk_name() -> None:
    config = parse_config({}, "test")
    assert config.dispatch.trunks[0].dial == "PJSIP/{number}@{trunk}"
    body = _context(render_dialplan(config), "callback-outbound")
    assert " same => n(trunk1),Dial(PJSIP/${EXTEN}@default,30)\n" in body


def test_each_trunk_is_dialled_with_its_own_string_and_an_unknown_one_with_none() -> None:
    config = _config(
        {"name": "carrier", "dial": "IAX2/{trunk}/{number}", "numbers": ["+7495*"]},
        {"name": "e1", "dial": "DAHDI/g0/{number}"},
    )
    body = _context(render_dialplan(config), "callback-outbound")
    lines = body.splitlines()
    jumps = [line for line in lines if "GotoIf" in line and "CALLBACK_TRUNK" in line]
    assert jumps == [
        ' same => n,GotoIf($["${CALLBACK_TRUNK}" = "carrier"]?trunk1)',
        ' same => n,GotoIf($["${CALLBACK_TRUNK}" = "e1"]?trunk2)',
    ]
    # No jump taken: the next lines hang up before any Dial.
    after = lines[lines.index(jumps[-1]) + 1 :]
    assert after[0].startswith(" same => n,NoOp(no trunk named")
    assert after[1] == " same => n,Hangup()"
    assert " same => n(trunk1),Dial(IAX2/carrier/${EXTEN},30)" in lines
    assert " same => n(trunk2),Dial(DAHDI/g0/${EXTEN},30)" in lines
    # Every Dial goes on to the same end, which reads DIALSTATUS.
    assert lines.count(" same => n,Goto(dialled)") == 2
    assert any(line.startswith(" same => n(dialled),NoOp(customer dial status") for line in lines)


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("PJSIP/{num}@{trunk}", "unknown placeholder {num}; allowed: {number}, {trunk}"),
        ("PJSIP/{exten}@{trunk}", "unknown placeholder {exten}"),
        ("PJSIP/carrier", "must hold {number} exactly once"),
        ("PJSIP/{number}&PJSIP/{number}@b", "must hold {number} exactly once"),
        ("PJSIP/{number}@{trunk},20", "the character ',' would break the dialplan"),
        ("PJSIP/{number}@{trunk};x", "the character ';' would break the dialplan"),
        ("PJSIP/{number}@${TRUNK}", "unknown placeholder {TRUNK}"),
        ("IAX2/{trunk}/{number}&SIP/x", "the character '&' would break the dialplan"),
        ("PJSIP/{number}@a)", "the character ')' would break the dialplan"),
        ("PJSIP/{number} @a", "the character ' ' would break the dialplan"),
        ("{number}@carrier", "must start with a channel technology and a slash"),
    ],
)
def test_a_bad_dial_template_is_refused_at_load_in_one_line_naming_the_key(
    template, problem
) -> None:
    with pytest.raises(ConfigError) as caught:
        _config({"name": "a"}, {"name": "carrier", "dial": template})
    assert len(caught.value.problems) == 1
    line = caught.value.problems[0]
    assert line.startswith("dispatch.trunks[1].dial: "), line
    assert problem in line
    assert "\n" not in line


@pytest.mark.parametrize("exten", ["{label}", "{digits}{category}", "9#{digits}", "{digits}x"])
def test_an_exten_that_is_not_only_the_number_is_refused(exten) -> None:
    # The Exten fills {number}: anything in it besides a digit prefix would reach Dial().
    with pytest.raises(ConfigError) as caught:
        _config({"name": "a"}, exten=exten)
    assert caught.value.problems[0].startswith("dispatch.exten: ")


def test_the_originate_never_carries_an_exten_that_is_not_a_number() -> None:
    config = _config({"name": "carrier", "dial": "IAX2/{trunk}/{number}"}, exten="8{nsn}")
    number = NumberPolicy(config.phone).parse_e164("+79161234567")
    plan = plan_originate(
        config,
        strategy_for(config.dispatch),
        callback_id="cb-1",
        category="support",
        number=number,
        interface="PJSIP/101",
        trunk="carrier",
        attempt_no=1,
    )
    assert plan.fields["Exten"] == "89161234567"
    assert "CALLBACK_TRUNK=carrier" in plan.fields["Variable"]
    # A config built around the checks (model_copy does not validate) still cannot get it in.
    forged = config.dispatch.model_copy(update={"exten": "{digits}&x"})
    bad = config.model_copy(update={"dispatch": forged})
    with pytest.raises(OriginateInputError, match="not a number"):
        plan_originate(
            bad,
            strategy_for(config.dispatch),
            callback_id="cb-1",
            category="support",
            number=number,
            interface="PJSIP/101",
            trunk="carrier",
            attempt_no=1,
        )


@pytest.mark.parametrize(
    ("template", "tech", "peer"),
    [
        ("PJSIP/{number}@{trunk}", "PJSIP", "79161230001@carrier"),
        ("IAX2/{trunk}/{number}", "IAX2", "carrier/79161230001"),
        ("DAHDI/g0/{number}", "DAHDI", "g0/79161230001"),
    ],
    ids=["pjsip", "iax2", "dahdi"],
)
async def test_the_simulator_dials_the_customer_with_the_configured_dial_string(
    template, tech, peer
) -> None:
    from dataclasses import replace

    from simpbx.clock import run_for
    from simpbx.model import PbxSpec
    from simpbx.pbx import SimPbx
    from simpbx.recording import Recorder
    from simpbx.scenarios import CAPTURE_EPOCH, originate

    from callback_dialer.clock import ManualClock

    from .helpers.compare import read_messages

    config = _config({"name": "carrier", "dial": template})
    clock = ManualClock(start=CAPTURE_EPOCH)
    pbx = SimPbx(
        clock, replace(PbxSpec(), trunk="carrier", trunk_dial=config.dispatch.trunks[0].dial)
    )
    recorder = Recorder(clock)
    pbx.listeners.append(recorder)
    try:
        originate(
            pbx,
            {
                "ActionID": "a",
                "Channel": "Local/101@agents",
                "Context": "callback-outbound",
                "Exten": "79161230001",
                "Variable": ["CALLBACK_ID=cb-1", "CALLBACK_TRUNK=carrier"],
                "Async": "true",
                "Timeout": "15000",
            },
            recorder,
        )
        await run_for(clock, 20)
        events = read_messages(recorder.events())
    finally:
        await pbx.close()
    dials = [m for m in events if m.get("Event") == "Newexten" and m.get("Application") == "Dial"]
    assert dials[0].get("AppData").startswith(f"{tech}/{peer},")
    [begin] = [m for m in events if m.get("Event") == "DialBegin" and m.get("Context")]
    assert begin.get("DialString") == peer
    assert begin.get("DestChannel").startswith(f"{tech}/")


def test_a_number_with_a_plus_reaches_the_dialling_contexts() -> None:
    # exten = "{e164}" makes the Originate's Exten "+79161234567": a "_X." pattern would not
    # match it and the call would die before any Dial ("_[+0-9]." does, checked on Asterisk
    # 22.9.0 with `dialplan show +79161230011@callback-outbound`).
    text = render_dialplan(_config({"name": "carrier"}, exten="{e164}"))
    for context in ("callback-outbound", "callback-customer"):
        first = _context(text, context).splitlines()[0]
        assert first.startswith("exten => _[+0-9].,1,"), first

"""The dialplan we ship, rendered from the configuration (``callback-dialer dialplan``).

It sets ``CALLBACK_CATEGORY`` from the IVR digit of each category, sends callers to the queue
that serves their category, offers a callback (the estimated time, the number read back, 1 to
confirm, 2 to type another) at the queue's door when the expected wait is longer than
``[ivr] offer_after``, when the caller presses ``*`` in a queue and when the queue gives up,
and holds the contexts the dialer's Originate uses. The offer asks the dialer over FastAGI
(callback_dialer/agi/offer.py); when the dialer does not answer, the dialplan falls back to a
plain ``CallbackRequested`` on the caller ID. It also shows the two ways a call is not owed a
callback: a self-service option that sets ``CALLBACK_SKIP`` (the IVR answered the caller
itself), and the outage notice, read from the AstDB keys the dialer mirrors an active outage
into (no AGI, no waiting on the dialer), plus the ``UserEvent`` by which a NOC extension
declares or ends an outage. The sample in config/asterisk/extensions.conf is this output for
the shipped config (a test keeps them equal).

Every inbound call also gets a hangup handler that writes its end into AstDB
(``<family>/calls/<uniqueid>``, one entry; detect/callrecord.py lists the fields), and every
callback call the fate of its customer leg (``<family>/fates/<callback id>``): what a dialer
that was not listening reads back when it returns (detect/records.py, dispatch/fates.py).
Values are URI-encoded field by field (ami/asterisk.py ``encode_record``), so no caller's name
can split a field or the AMI frame that carries it back.
"""

from __future__ import annotations

from ..ami.asterisk import (
    CALL_QUEUE_VAR,
    CALL_REQUEST_VAR,
    CALL_START_VAR,
    CALLBACK_CLAIM_VAR,
    OUTAGE_DB_FAMILY,
    RECORD_VERSION,
    SKIP_VAR,
)
from ..config import Config

_NOW = "${STRFTIME(,,%s.%3q)}"  # now, to the millisecond


def _records(config: Config) -> str:
    """The two hangup handlers and the index some old Asterisk versions need."""
    fam = config.records.family
    call_fields = "&".join(
        [
            f"v={RECORD_VERSION}",
            "num=${URIENCODE(${CALLERID(num)})}",
            "name=${URIENCODE(${CALLERID(name)})}",
            "cat=${URIENCODE(${CALLBACK_CATEGORY})}",
            f"start=${{{CALL_START_VAR}}}",
            f"end={_NOW}",
            "answered=${ANSWEREDTIME_MS}",
            "agent=${URIENCODE(${MEMBERINTERFACE})}",
            "peer=${URIENCODE(${DIALEDPEERNAME})}",
            f"queue=${{URIENCODE(${{{CALL_QUEUE_VAR}}})}}",
            "status=${QUEUESTATUS}",
            "abandoned=${ABANDONED}",
            f"req=${{URIENCODE(${{{CALL_REQUEST_VAR}}})}}",
            f"skip=${{URIENCODE(${{{SKIP_VAR}}})}}",
        ]
    )
    fate_fields = "&".join(
        [
            f"v={RECORD_VERSION}",
            f"claim=${{{CALLBACK_CLAIM_VAR}}}",
            "dial=${DIALSTATUS}",
            "answered=${ANSWEREDTIME_MS}",
            "agent=${URIENCODE(${CHANNEL(name)})}",
            f"end={_NOW}",
        ]
    )
    index_call = index_fate = ""
    if config.records.index:
        index_call = " same => n,Gosub(callback-record-index,s,1(calls/${UNIQUEID}))\n"
        index_fate = " same => n,Gosub(callback-record-index,s,1(fates/${CALLBACK_ID}))\n"
    text = f"""\
; ---------------------------------------------------------------------------------------
; Records the dialer reads back after being away (a restart, a crash, a cut AMI link), in
; AstDB family {fam} ([records] in dialer.toml). Each inbound call: one entry when it ends.
; Gosub here first thing from your own inbound context too (FreePBX: the custom destination
; your inbound route goes to): exten => s,1,Gosub(callback-record-call,s,1)
[callback-record-call]
exten => s,1,Set({CALL_START_VAR}={_NOW})
 same => n,Set(CHANNEL(hangup_handler_push)=callback-record-call,record,1)
 same => n,Return()
exten => record,1,Set(DB({fam}/calls/${{UNIQUEID}})={call_fields})
{index_call} same => n,Return()

; Each callback call: how the customer's leg ended (DIALSTATUS, ms connected, the agent),
; under the claim the dialer placed it with, so a dialer that was not running settles it.
[callback-record-fate]
exten => s,1,Set(CHANNEL(hangup_handler_push)=callback-record-fate,record,1)
 same => n,Return()
exten => record,1,GotoIf($["${{CALLBACK_ID}}" = ""]?done)
 same => n,Set(DB({fam}/fates/${{CALLBACK_ID}})={fate_fields})
{index_fate} same => n(done),Return()
"""
    if config.records.index:
        text += f"""\
; [records] index = true: Asterisk without the DBGetTree action (before 16.28, 18.14, 19.6)
; cannot list a family, so each record's key is also written in a numbered slot.
[callback-record-index]
exten => s,1,Set(CALLBACK_LOCKED=${{LOCK(callback-dialer-index)}})
 same => n,Set(CALLBACK_SEQ=$[${{IF(${{DB_EXISTS({fam}/seq)}}?${{DB_RESULT}}:0)}} + 1])
 same => n,Set(DB({fam}/seq)=${{CALLBACK_SEQ}})
 same => n,Set(DB({fam}/index/${{CALLBACK_SEQ}})=${{ARG1}})
 same => n,Set(CALLBACK_LOCKED=${{UNLOCK(callback-dialer-index)}})
 same => n,Return()
"""
    return text


HEADER = """\
; callback-dialer dialplan: generated by `callback-dialer dialplan` from the dialer's config.
; Include it from extensions.conf (or extensions_custom.conf on FreePBX):
;     #include callback-dialer.conf
; Prompts named callback-* are yours to record (README, "The callback offer"); until then
; Playback just skips them. Every other prompt is in Asterisk's core sounds (en, ru, ...),
; played in the channel's language (CHANNEL(language), e.g. language=ru on the trunk).

[globals]
; How long a caller waits in a queue before the dialplan offers a callback (seconds):
; [ivr] offer_after.
CALLBACK_QUEUE_TIMEOUT = {queue_timeout}
; The number customers see when we call them back: your public number, not theirs.
CALLBACK_PUBLIC_CALLERID = "Support" <74950000000>
; The dialer's FastAGI server ([ivr] agi_host/agi_port, or agi_address).
CALLBACK_AGI_URL = {agi_url}
"""


# What the dialer set on the Originate (dispatch/whisper.py), handed to the whisper.
WHISPER_ARGS = (
    "${CALLBACK_CATEGORY},${CALLBACK_WAITED},${CALLBACK_WAITED_HOURS},${CALLBACK_CALLS},"
    "${CALLBACK_LANG}"
)

WHISPER_CONTEXTS = """\
; ---------------------------------------------------------------------------------------
; The whisper ([whisper]), on the agent's channel: "Callback. <category>. Called <N> minutes
; (or hours) ago, <M> times." ARG1 category, ARG2 minutes since the first missed call, ARG3
; whole hours (0 under two hours), ARG4 calls, ARG5 language ("": the channel's own). Every
; value is a category name or a number the dialer wrote; the prompts are listed in the README.
[callback-whisper]
exten => s,1,ExecIf($["${ARG5}" != ""]?Set(CHANNEL(language)=${ARG5}))
 same => n,Playback(callback-whisper)
 same => n,Playback(callback-category-${ARG1})
 same => n,Playback(callback-whisper-called)
 same => n,GotoIf($[${ARG3} > 0]?hours)
 same => n,Gosub(callback-say-counted,s,1(${ARG2},callback-minute,f))
 same => n,Goto(ago)
 same => n(hours),Gosub(callback-say-counted,s,1(${ARG3},callback-hour))
 same => n(ago),Playback(callback-ago)
 same => n,Gosub(callback-say-counted,s,1(${ARG4},callback-time))
 same => n,Return()

; SayNumber(ARG1, gender ARG3), then the noun ARG2 in the form that number needs, named as
; SayCountedNoun names them (app_saycounted is not built by default): English ARG2 for 1,
; ARG2 + "s" otherwise; Russian ARG2 for 1, 21, 31 ..., ARG2 + "x1" for 2-4, 22-24 ...,
; ARG2 + "x2" for 0, 5-20, 25-30 ... (An empty gender is an error that hangs the channel up:
; SayNumber gets one only when there is one.)
[callback-say-counted]
exten => s,1,GotoIf($["${ARG3}" != ""]?gender)
 same => n,SayNumber(${ARG1})
 same => n,Goto(noun)
 same => n(gender),SayNumber(${ARG1},${ARG3})
 same => n(noun),GotoIf($["${CHANNEL(language):0:2}" = "ru"]?ru)
 same => n,Playback(${ARG2}${IF($[${ARG1} = 1]?:s)})
 same => n,Return()
 same => n(ru),Set(LOCAL(form)=x2)
 same => n,ExecIf($[$[${ARG1} % 10] >= 2 & $[${ARG1} % 10] <= 4 & \
$[$[${ARG1} % 100] < 12 | $[${ARG1} % 100] > 14]]?Set(LOCAL(form)=x1))
 same => n,ExecIf($[$[${ARG1} % 10] = 1 & $[${ARG1} % 100] != 11]?Set(LOCAL(form)=))
 same => n,Playback(${ARG2}${form})
 same => n,Return()
"""


def _queue_for(config: Config, category: str) -> str | None:
    for queue, categories in config.dispatch.queues.items():
        if category in categories:
            return queue
    return None


def render_trunk_dial(template: str, trunk: str) -> str:
    """A trunk's dial string as the dialplan dials it: ``{number}`` is the Originate's Exten
    (a number the dialer validated), ``{trunk}`` the trunk's name (config checks both)."""
    return template.replace("{number}", "${EXTEN}").replace("{trunk}", trunk)


def _dial_by_trunk(config: Config, ring_seconds: float) -> str:
    """The priorities that dial the customer over the trunk the dialer chose (CALLBACK_TRUNK),
    each trunk with its own dial string; they stay in the calling context, so the DialBegin
    the dialer follows names that context. An unknown trunk is dialled over none."""
    seconds = int(ring_seconds)
    lines = []
    for n, trunk in enumerate(config.dispatch.trunks, 1):
        lines.append(f' same => n,GotoIf($["${{CALLBACK_TRUNK}}" = "{trunk.name}"]?trunk{n})')
    lines.append(" same => n,NoOp(no trunk named ${CALLBACK_TRUNK} in this dialplan)")
    lines.append(" same => n,Hangup()")
    for n, trunk in enumerate(config.dispatch.trunks, 1):
        dial = render_trunk_dial(trunk.dial, trunk.name)
        lines.append(f" same => n(trunk{n}),Dial({dial},{seconds})")
        lines.append(" same => n,Goto(dialled)")
    return "\n".join(lines)


def render_dialplan(config: Config) -> str:
    d = config.dispatch
    inbound = (
        config.detection.inbound_contexts[0] if config.detection.inbound_contexts else ("ivr-in")
    )
    fallback = config.detection.fallback_category
    event = config.detection.callback_request_event
    offer = render_offer(config)
    lines = [HEADER.format(queue_timeout=int(config.ivr.offer_after), agi_url=config.ivr.agi_url())]
    lines.append(f"""\
; ---------------------------------------------------------------------------------------
; The IVR: calls from your trunk arrive here ([detection] inbound_contexts lists "{inbound}").
[{inbound}]
exten => s,1,NoOp(inbound from ${{CALLERID(num)}})
 same => n,Gosub(callback-record-call,s,1)
 same => n,Answer()
 same => n,Background(callback-ivr-menu)
 same => n,WaitExten(6)
""")
    for category in config.categories:
        queue = _queue_for(config, category.name)
        if not category.ivr_digit or queue is None:
            continue
        outage_key = f"{OUTAGE_DB_FAMILY}/cat-{category.name}"
        lines.append(f"""\
; {category.label or category.name}
exten => {category.ivr_digit},1,Set(CALLBACK_CATEGORY={category.name})
 same => n,GosubIf(${{DB_EXISTS({outage_key})}}?callback-outage-notice,s,1)
 same => n,Set({CALL_QUEUE_VAR}={queue})
 same => n,Gosub(callback-door,s,1({queue}))
 same => n,Queue({queue},,,,${{CALLBACK_QUEUE_TIMEOUT}})
 same => n,Goto(callback-after-queue,s,1)
""")
    used = {c.ivr_digit for c in config.categories if c.ivr_digit}
    self_digit = next((digit for digit in "9876540" if digit not in used), "")
    if self_digit:
        lines.append(f"""\
; Self-service (a sample: your balance): the IVR answers the caller itself, so the call is
; not owed a callback. {SKIP_VAR}=<reason> (a-z, 0-9, _) is counted on the page, in
; /metrics and in the daily report. Clear it (Set({SKIP_VAR}=)) if the caller goes on to
; a queue. Or list the context in [detection] self_service instead of setting it.
exten => {self_digit},1,Set({SKIP_VAR}=balance)
 same => n,Playback(callback-your-balance)
 same => n,Hangup()
""")
    fallback_queue = _queue_for(config, fallback) or next(iter(d.queues), "support")
    lines.append(f"""\
; No choice (or an invalid one): the fallback category.
exten => t,1,Set(CALLBACK_CATEGORY={fallback})
 same => n,Set({CALL_QUEUE_VAR}={fallback_queue})
 same => n,Gosub(callback-door,s,1({fallback_queue}))
 same => n,Queue({fallback_queue},,,,${{CALLBACK_QUEUE_TIMEOUT}})
 same => n,Goto(callback-after-queue,s,1)
exten => i,1,Goto(t,1)

; An outage the dialer knows of covers the caller's category: say so before the queue.
; The dialer keeps {OUTAGE_DB_FAMILY}/cat-<category> in AstDB while one lasts (and
; {OUTAGE_DB_FAMILY}/message, /until for a text-to-speech prompt). A caller who still hangs
; up is missed as usual: the dialer holds the callback until the outage ends.
[callback-outage-notice]
exten => s,1,NoOp(outage: ${{DB({OUTAGE_DB_FAMILY}/message)}} \
until ${{DB({OUTAGE_DB_FAMILY}/until)}})
 same => n,Playback(callback-outage-known)
 same => n,Return()

; Declaring an outage from the dialplan (say a NOC extension): the dialer hears the UserEvent.
; Lists are separated by "|"; Until is local HH:MM or a Unix time. End: Choice drop or release.
[callback-outage-control]
exten => declare,1,UserEvent({config.detection.outage_event},Action: declare,\
Id: ${{OUTAGE_ID}},Categories: support,Prefixes: ${{OUTAGE_PREFIXES}},\
Message: ${{OUTAGE_MESSAGE}},Until: ${{OUTAGE_UNTIL}})
 same => n,Hangup()
exten => end,1,UserEvent({config.detection.outage_event},Action: end,Id: ${{OUTAGE_ID}},\
Choice: ${{OUTAGE_CHOICE}})
 same => n,Hangup()

; Queue() returned without an agent (timeout, empty queue): offer a callback; when the
; dialer does not answer or the caller chooses nothing, promise one on the caller ID.
[callback-after-queue]
exten => s,1,NoOp(queue status ${{QUEUESTATUS}})
 same => n,Set({CALL_REQUEST_VAR}=${{QUEUESTATUS}})
 same => n,Gosub(callback-offer,s,1(${{QUEUESTATUS}}))
 same => n,UserEvent({event},Reason: ${{QUEUESTATUS}},\
Category: ${{CALLBACK_CATEGORY}},Number: ${{CALLBACK_TARGET}})
 same => n,Playback(callback-we-will-call-you)
 same => n,Hangup()

; A key pressed while waiting in a queue (queues.conf: context = callback-queue-exit):
; "*" asks for a callback.
[callback-queue-exit]
exten => *,1,Set({CALL_REQUEST_VAR}=KEYPRESS)
 same => n,Gosub(callback-offer,s,1(KEYPRESS))
 same => n,UserEvent({event},Reason: KEYPRESS,\
Category: ${{CALLBACK_CATEGORY}},Number: ${{CALLBACK_TARGET}})
 same => n,Playback(callback-we-will-call-you)
 same => n,Hangup()
{offer}
; ---------------------------------------------------------------------------------------
; Agent first ([dispatch] mode = "agent_first"): the agent has answered the dialer's
; Originate; now the customer is dialled over the trunk the dialer chose (CALLBACK_TRUNK),
; with that trunk's dial string ([[dispatch.trunks]] dial). EXTEN is the number as
; [dispatch] exten formats it (digits, or a "+" and digits with {{e164}}: hence the pattern).
[{d.context}]
exten => _[+0-9].,1,NoOp(callback ${{CALLBACK_ID}} (${{CALLBACK_CATEGORY}}) to ${{EXTEN}} \
over ${{CALLBACK_TRUNK}})
 same => n,Gosub(callback-record-fate,s,1)
 same => n,Set(CALLERID(all)=${{CALLBACK_PUBLIC_CALLERID}})
 same => n,GotoIf($["${{CALLBACK_WHISPER}}" != "1"]?trunk)
 same => n,Gosub(callback-whisper,s,1({WHISPER_ARGS}))
 same => n(trunk),NoOp(dialling over ${{CALLBACK_TRUNK}})
{_dial_by_trunk(config, d.customer_ring_seconds)}
 same => n(dialled),NoOp(customer dial status ${{DIALSTATUS}})
 same => n,Hangup()

; Customer first ([dispatch] mode = "customer_first"): the Originate's Channel is
; Local/<number>@callback-customer/n, which dials the customer ("/n": the Local pair must
; stay, or Asterisk optimizes it away when the agent answers and the dialer's channels
; hang up in the middle of the call) ...
[callback-customer]
exten => _[+0-9].,1,Gosub(callback-record-fate,s,1)
 same => n,Set(CALLERID(all)=${{CALLBACK_PUBLIC_CALLERID}})
{_dial_by_trunk(config, d.customer_ring_seconds)}
 same => n(dialled),Hangup()

; ... and once they answer, {d.agent_context} rings the reserved agent (CALLBACK_AGENT).
; With [whisper] customer_first the agent hears the whisper once they answer (Dial's U
; option), before being put through; the customer hears ringing meanwhile.
[{d.agent_context}]
exten => _X.,1,NoOp(callback ${{CALLBACK_ID}}: customer answered, ringing ${{CALLBACK_AGENT}})
 same => n,GotoIf($["${{CALLBACK_WHISPER}}" = "1"]?whisper)
 same => n,Dial(${{CALLBACK_AGENT}},{int(d.agent_ring_seconds)})
 same => n,Hangup()
 same => n(whisper),Dial(${{CALLBACK_AGENT}},{int(d.agent_ring_seconds)},\
U(callback-whisper^{WHISPER_ARGS.replace(",", "^")}))
 same => n,Hangup()

{WHISPER_CONTEXTS}""")
    lines.append(_records(config))
    return "\n".join(lines)


def render_offer(config: Config) -> str:
    """The callback offer ([ivr]): the queue's door check and the offer itself."""
    event = config.detection.callback_request_event
    after, tries = int(config.ivr.offer_after), config.ivr.number_tries
    return f"""
; ---------------------------------------------------------------------------------------
; The callback offer. The dialer answers over FastAGI (CALLBACK_AGI_URL) from memory, so
; the caller never waits on its database; CALLBACK_AGI_STATUS = ok says it answered. Every
; value it sets is digits or a word of its own: only a number it validated is read back or
; registered. Prompts: callback-* are yours to record, the rest ship with Asterisk's core
; sounds (README, "The callback offer").

; At the queue's door (Gosub with the queue's name): when the expected wait there is longer
; than [ivr] offer_after ({after} s), offer the callback at once. A caller who
; chooses nothing goes on into the queue; so does everyone when the dialer does not answer.
[callback-door]
exten => s,1,Set(CALLBACK_AGI_STATUS=)
 same => n,AGI(${{CALLBACK_AGI_URL}}/door,${{ARG1}},${{CALLBACK_CATEGORY}})
 same => n,GotoIf($["${{CALLBACK_AGI_STATUS}}" != "ok" | "${{CALLBACK_OFFER}}" != "yes"]?in)
 same => n,Gosub(callback-offer,s,1(DOOR))
 same => n(in),Return()

; The offer (Gosub; ARG1: DOOR, KEYPRESS or the queue's status): "We can call you back in
; about N minutes. Telephone number ... If this is correct, press 1; press 2 to enter a
; different number." Another number is checked by the dialer ([phone] default_region); a bad
; one is asked again, {tries} tries in all ([ivr] number_tries), then refused
; politely. A taken offer, and a refusal, end the call here (a refused caller is then a missed
; call like any other: called back on the caller ID when it is a number); otherwise this
; returns (CALLBACK_OFFER_RESULT declined or unavailable) and the caller goes on as before.
[callback-offer]
exten => s,1,Set(CALLBACK_OFFER_RESULT=unavailable)
 same => n,Set(CALLBACK_TARGET=)
 same => n,Set(LOCAL(why)=${{ARG1}})
 same => n,Set(LOCAL(tries)=0)
 same => n,Set(LOCAL(asks)=0)
 same => n,Set(CALLBACK_AGI_STATUS=)
 same => n,AGI(${{CALLBACK_AGI_URL}}/offer,${{CALLBACK_CATEGORY}},${{why}})
 same => n,GotoIf($["${{CALLBACK_AGI_STATUS}}" != "ok" | "${{CALLBACK_ETA}}" = ""]?back)
 same => n,Set(CALLBACK_OFFER_RESULT=declined)
 same => n,Playback(callback-offer)
 same => n,SayNumber(${{CALLBACK_ETA}})
 same => n,Playback(queue-minutes)
 same => n,GotoIf($["${{CALLBACK_READBACK}}" = ""]?typing)
 same => n(readback),Playback(telephone-number)
 same => n,SayDigits(${{CALLBACK_READBACK}})
 same => n,Read(CALLBACK_CHOICE,if-correct-press&digits/1&vm-calldiffnum,1,,1,6)
 same => n,Set(LOCAL(asks)=$[${{asks}} + 1])
 same => n,GotoIf($["${{CALLBACK_CHOICE}}" = "1"]?register)
 same => n,GotoIf($["${{CALLBACK_CHOICE}}" = "2"]?typing)
 same => n,GotoIf($[${{asks}} < 2]?readback)
 same => n(back),Return()
 same => n(typing),Set(LOCAL(tries)=$[${{tries}} + 1])
 same => n,Set(LOCAL(asks)=0)
 same => n,Read(CALLBACK_TYPED,vm-enter-num-to-call&vm-then-pound,20,,1,10)
 same => n,Set(CALLBACK_AGI_STATUS=)
 same => n,AGI(${{CALLBACK_AGI_URL}}/number,${{CALLBACK_TYPED}})
 same => n,GotoIf($["${{CALLBACK_AGI_STATUS}}" != "ok"]?back)
 same => n,GotoIf($["${{CALLBACK_TYPED_OK}}" = "1"]?typed)
 same => n,GotoIf($[${{tries}} >= {tries}]?refuse)
 same => n,Playback(check-number-dial-again)
 same => n,Goto(typing)
 same => n(typed),Set(CALLBACK_TARGET=${{CALLBACK_TYPED_NUMBER}})
 same => n,Playback(you-entered)
 same => n,Goto(readback)
 same => n(register),Set(CALLBACK_AGI_STATUS=)
 same => n,AGI(${{CALLBACK_AGI_URL}}/register,${{CALLBACK_CATEGORY}},${{why}},${{CALLBACK_TARGET}})
 same => n,GotoIf($["${{CALLBACK_AGI_STATUS}}" != "ok" | "${{CALLBACK_REGISTERED}}" != "1"]?back)
 same => n,Set(CALLBACK_OFFER_RESULT=accepted)
 same => n,UserEvent({event},Reason: ${{why}},\
Category: ${{CALLBACK_CATEGORY}},Number: ${{CALLBACK_NUMBER}})
 same => n,Playback(auth-thankyou)
 same => n,Playback(callback-we-will-call-you)
 same => n,Hangup()
 same => n(refuse),Set(CALLBACK_OFFER_RESULT=refused)
 same => n,Playback(im-sorry)
 same => n,Playback(callback-number-refused)
 same => n,Playback(vm-goodbye)
 same => n,Hangup()
"""

"""The AMI wire decoder: what a damaged or hostile stream does to it (nothing lasting)."""

from __future__ import annotations

from callback_dialer.ami.frames import AmiMessage, FrameDecoder, encode_message

EVENT = b"Event: Hangup\r\nChannel: IAX2/carrier-1\r\nUniqueid: 1.1\r\n\r\n"


def test_greeting_then_messages() -> None:
    decoder = FrameDecoder()
    out = decoder.feed(b"Asterisk Call Manager/11.0.0\r\n" + EVENT)
    assert decoder.greeting == "Asterisk Call Manager/11.0.0"
    assert [m.event for m in out] == ["Hangup"]


def test_repeated_headers_are_all_kept_in_order() -> None:
    raw = (
        b"Event: Newchannel\r\nChanVariable: CALLBACK_CATEGORY=support\r\n"
        b"ChanVariable: CALLBACK_ID=\r\n\r\n"
    )
    [message] = FrameDecoder().feed(raw)
    assert message.getall("ChanVariable") == ["CALLBACK_CATEGORY=support", "CALLBACK_ID="]
    assert message.chanvars() == {"CALLBACK_CATEGORY": "support", "CALLBACK_ID": ""}
    single = FrameDecoder().feed(b"Event: X\r\nChanVariable: A=1\r\n\r\n")[0]
    assert single.getall("ChanVariable") == ["A=1"] and single.chanvars() == {"A": "1"}
    assert single.getall("Nothing") == []


def test_originate_response_chanvariables_with_the_channel_in_the_name() -> None:
    raw = (
        b"Event: OriginateResponse\r\nChanVariable(Local/101@agents-00000001;1): "
        b"CALLBACK_ID=cb-1\r\n\r\n"
    )
    [message] = FrameDecoder().feed(raw)
    assert message.chanvars() == {"CALLBACK_ID": "cb-1"}


def test_a_utf8_character_split_across_reads_stays_whole() -> None:
    raw = "Event: Newchannel\r\nCallerIDName: Жанна Jérôme\r\n\r\n".encode()
    decoder = FrameDecoder()
    out = []
    for i in range(len(raw)):
        out += decoder.feed(raw[i : i + 1])
    assert [m.get("CallerIDName") for m in out] == ["Жанна Jérôme"]


def test_lines_without_a_colon_and_binary_junk_are_skipped() -> None:
    decoder = FrameDecoder()
    junk = b"\x00\xff\xfe garbage line\r\nno colon here\r\n\r\n" + bytes(range(256)) + b"\r\n\r\n"
    out = decoder.feed(junk + EVENT)
    assert [m.event for m in out] == ["Hangup"]
    assert decoder.stats.bad_lines >= 2
    assert decoder.stats.dropped_frames >= 1


def test_a_megabyte_header_is_dropped_and_the_stream_goes_on() -> None:
    decoder = FrameDecoder()
    huge = b"Event: Newchannel\r\nCallerIDName: " + b"A" * 1_048_576
    out = []
    for i in range(0, len(huge), 65536):
        out += decoder.feed(huge[i : i + 65536])
    out += decoder.feed(b"\r\n\r\n" + EVENT)
    assert [m.event for m in out] == ["Hangup"]
    assert decoder.stats.oversized_frames == 1


def test_a_frame_cut_by_a_disconnect_does_not_leak_into_the_next_connection() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"Event: Newchannel\r\nChannel: IAX2/carr") == []
    decoder.reset()
    out = decoder.feed(b"Asterisk Call Manager/11.0.0\r\n" + EVENT)
    assert [(m.event, m.get("Channel")) for m in out] == [("Hangup", "IAX2/carrier-1")]
    assert decoder.stats.dropped_frames == 1


def test_messages_without_event_or_response_are_dropped() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"Foo: bar\r\n\r\n") == []
    assert decoder.stats.dropped_frames == 1


def test_encode_and_decode_round_trip() -> None:
    pairs = [
        ("Event", "Newchannel"),
        ("ChanVariable", "A=1"),
        ("ChanVariable", "B=2"),
        ("CallerIDName", "Иван"),
    ]
    [message] = FrameDecoder().feed(encode_message(pairs))
    assert message.pairs() == pairs
    assert isinstance(message, AmiMessage)

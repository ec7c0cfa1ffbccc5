"""The offer's prompts: every sound the generated dialplan plays is either one of ours
(``callback-*``, documented in the README for the administrator to record) or ships with
Asterisk's core sounds in English and in Russian (the file lists of Debian's
asterisk-core-sounds-en-gsm and -ru-gsm 1.6.1, tests/fixtures/asterisk/core-sounds-*.txt), and
a Russian channel really heard them in Russian (tests/fixtures/asterisk/offer/ru_playback.log,
Asterisk 22.9.0 running the generated dialplan with language = ru on the trunk)."""

from __future__ import annotations

import re

from callback_dialer.ivr.dialplan import render_offer

from .conftest import FIXTURES, REPO

SOUNDS = FIXTURES / "asterisk"
APPS = re.compile(r"\b(Playback|Background|Read)\(([^)]*)\)")


def prompts(config) -> set[str]:
    """Every sound file the offer's contexts name."""
    names: set[str] = set()
    for app, args in APPS.findall(render_offer(config)):
        files = args.split(",")[1] if app == "Read" else args.split(",")[0]
        names.update(f for f in files.split("&") if f and "$" not in f)
    return names


def core(language: str) -> set[str]:
    return set((SOUNDS / f"core-sounds-{language}.txt").read_text().split())


def test_every_offer_prompt_is_ours_or_in_the_core_sounds_of_both_languages(config) -> None:
    names = prompts(config)
    ours = {n for n in names if n.startswith("callback-")}
    assert ours == {"callback-offer", "callback-we-will-call-you", "callback-number-refused"}
    for language in ("en", "ru"):
        missing = names - ours - core(language)
        assert not missing, f"not in the {language} core sounds: {sorted(missing)}"
    # SayNumber and SayDigits use the core digits.
    for language in ("en", "ru"):
        assert {f"digits/{d}" for d in range(10)} <= core(language)


def test_the_readme_lists_every_prompt_to_record(config) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### The callback offer") :]
    for name in {n for n in prompts(config) if n.startswith("callback-")}:
        assert f"`{name}`" in section, name


def test_a_russian_channel_heard_the_core_prompts_in_russian(config) -> None:
    log = (SOUNDS / "offer" / "ru_playback.log").read_text()
    played = set(re.findall(r"Playing '([^']+)\.gsm' \(language 'ru'\)", log))
    assert {"telephone-number", "queue-minutes", "if-correct-press", "vm-enter-num-to-call"} <= (
        played
    )
    assert "(language 'en')" not in log  # the caller's channel: nothing fell back to English
    # Only our own prompts were missing (nobody recorded them in the lab).
    missing = set(re.findall(r"File (\S+) does not exist in any format", log))
    assert missing and all(name.startswith("callback-") for name in missing)

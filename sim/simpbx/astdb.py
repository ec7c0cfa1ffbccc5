"""Asterisk's database (AstDB) and the records our shipped dialplan writes into it.

The store is main/db.c's: one table of ``/family/key`` -> value, a tree read matching the
SQL ``key || '/' LIKE prefix || '/' || '%'`` (so ``LIKE``'s case-blindness and its ``_``
wildcard included) in key order. The records are what the shipped dialplan's hangup
handlers write (callback_dialer/ivr/dialplan.py): one entry per inbound call when its channel
hangs up, ``<family>/calls/<uniqueid>``, and one per callback call, ``<family>/fates/<id>``;
with ``index`` (the dialplan for Asterisk without DBGetTree) also the numbered slot naming it.
A PbxSpec without ``records_family`` writes nothing: an old dialplan.
"""

from __future__ import annotations

import re

from callback_dialer.ami.asterisk import RECORD_VERSION, encode_record


def _like(pattern: str) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        parts.append("." if ch == "_" else ".*" if ch == "%" else re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


class AstDb:
    def __init__(self) -> None:
        self.entries: dict[str, str] = {}  # "/family/key" -> value
        self.writes = 0

    @staticmethod
    def _key(family: str, key: str) -> str:
        return f"/{family}/{key}"

    def put(self, family: str, key: str, value: str) -> None:
        self.entries[self._key(family, key)] = value
        self.writes += 1

    def get(self, family: str, key: str) -> str | None:
        return self.entries.get(self._key(family, key))

    def delete(self, family: str, key: str) -> bool:
        return self.entries.pop(self._key(family, key), None) is not None

    def tree(self, family: str = "", key: str = "") -> list[tuple[str, str]]:
        """DBGetTree: (full key, value) in key order."""
        if not family:
            return sorted(self.entries.items())
        prefix = f"/{family}/{key}" if key else f"/{family}"
        like = _like(prefix + "/%")
        return sorted((k, v) for k, v in self.entries.items() if like.fullmatch(k + "/"))

    def delete_tree(self, family: str, key: str = "") -> int:
        gone = [k for k, _ in self.tree(family, key)]
        for k in gone:
            del self.entries[k]
        return len(gone)

    # ------------------------------------------------------------------ the dialplan's records

    def _indexed(self, family: str, key: str) -> None:
        """callback-record-index: the next slot names the record (under LOCK())."""
        seq = int(self.get(family, "seq") or 0) + 1
        self.put(family, "seq", str(seq))
        self.put(family, f"index/{seq}", key)

    def record_call(self, family: str, uniqueid: str, fields: dict[str, str], index: bool) -> None:
        self.put(family, f"calls/{uniqueid}", encode_record({"v": RECORD_VERSION, **fields}))
        if index:
            self._indexed(family, f"calls/{uniqueid}")

    def record_fate(
        self, family: str, callback_id: str, fields: dict[str, str], index: bool
    ) -> None:
        self.put(family, f"fates/{callback_id}", encode_record({"v": RECORD_VERSION, **fields}))
        if index:
            self._indexed(family, f"fates/{callback_id}")


def ms(seconds: float) -> str:
    """${STRFTIME(,,%s.%3q)}: seconds with three decimals."""
    return f"{seconds:.3f}"

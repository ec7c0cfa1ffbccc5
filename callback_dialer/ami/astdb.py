"""Asterisk's own database (AstDB) over AMI: what the dialplan wrote, read back and deleted.

The dialplan keeps records where they outlive the dialer (detect/records.py says which). This
is the AMI side of it, in Asterisk's words (main/db.c, identical in 20.20.1 and 22.9.0):

- ``DBGetTree`` (Family, Key): a list, one ``DBGetTreeResponse`` per entry with ``Key`` (the
  full key, ``/family/key/...``) and ``Val``, then ``DBGetTreeComplete``. Added in 16.28.0,
  18.14.0 and 19.6.0 (every 20 and 22 has it); older versions answer ``Response: Error`` with
  ``Invalid/unknown command: DBGetTree.``, which ``get_tree`` reports as ``TreeUnsupported``.
- ``DBGet``: a list of one ``DBGetResponse`` (Family, Key, Val); an absent key is
  ``Response: Error``, ``Message: Database entry not found``: None here.
- ``DBPut``, ``DBDel``: one response; ``DBDel`` of an absent key is an error, which here is
  "already gone" (False), never a failure.

Values come back as stored: no C-escaping (unlike channel events), so a value holding a line
break would break the frame; the dialplan therefore URI-encodes what it writes.

Permissions (manager.c checks the user's *write* class against the action's): DBGet and
DBGetTree need ``system`` or ``reporting``; DBPut and DBDel need ``system``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .client import AmiActionFailed, AmiClient


class TreeUnsupported(Exception):
    """This Asterisk has no DBGetTree action (before 16.28, 18.14, 19.6)."""


@dataclass(frozen=True, slots=True)
class Entry:
    key: str  # the key below the family asked for ("calls/1733.12"), without the family
    value: str


_NOT_FOUND = "Database entry not found"
_UNKNOWN = "Invalid/unknown command"


class AstDb:
    def __init__(self, ami: AmiClient, *, timeout: float | None = None) -> None:
        self.ami = ami
        self.timeout = timeout

    async def get_tree(
        self, family: str, key: str = "", *, timeout: float | None = None
    ) -> list[Entry]:
        """Every entry under ``family``/``key``, keys relative to ``family``."""
        fields = {"Action": "DBGetTree", "Family": family}
        if key:
            fields["Key"] = key
        try:
            items = await self.ami.send_list(fields, timeout=timeout or self.timeout)
        except AmiActionFailed as exc:
            if str(exc).startswith(_UNKNOWN):
                raise TreeUnsupported(str(exc)) from None
            raise
        head = f"/{family}/"
        out = []
        for item in items:
            if item.event != "DBGetTreeResponse":
                continue
            full = item.get("Key")
            if full.startswith(head):
                out.append(Entry(full[len(head) :], item.get("Val")))
        return out

    async def get(self, family: str, key: str) -> str | None:
        try:
            items = await self.ami.send_list(
                {"Action": "DBGet", "Family": family, "Key": key}, timeout=self.timeout
            )
        except AmiActionFailed as exc:
            if str(exc).startswith(_NOT_FOUND):
                return None
            raise
        for item in items:
            if item.event == "DBGetResponse":
                return item.get("Val")
        return None

    async def put(self, family: str, key: str, value: str) -> None:
        await self.ami.send_action(
            {"Action": "DBPut", "Family": family, "Key": key, "Val": value}, timeout=self.timeout
        )

    async def delete(self, family: str, key: str) -> bool:
        """True when the entry was there and is gone; False when it was gone already."""
        try:
            await self.ami.send_action(
                {"Action": "DBDel", "Family": family, "Key": key}, timeout=self.timeout
            )
        except AmiActionFailed as exc:
            if "could not be deleted" in str(exc):
                return False
            raise
        return True

"""The side jobs and the daily reports as the page shows them, and the report downloads.

What the dialer reads (``StatusSource.side_jobs``, ``reports``, ``report_file``) is turned here
into the JSON of ``GET /api/jobs``, ``GET /api/reports`` and the live stream's ``jobs`` message,
in two versions: whole for supervisors, and for viewers (``[web] mask_numbers_for_viewers``)
with numbers in error texts masked (a gateway's error may quote one) and no download links, as
a report holds every number in full. ``/reports/<file>`` serves a file to supervisors only.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from ..config import Config
from ..jobs.reports import ReportFiles
from .errors import ApiError
from .sessions import principal
from .views import Views

if TYPE_CHECKING:
    from .ports import StatusSource


class SideJobsView:
    def __init__(self, config: Config, status: StatusSource, views: Views) -> None:
        self.config = config
        self.status = status
        self.views = views

    async def jobs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Side jobs as (full, masked for viewers); a gateway's error text may hold a number."""
        jobs = await self.status.side_jobs()
        full = {
            "available": True,
            "error": "",
            "counts": asdict(jobs.counts),
            "failed": [asdict(j) for j in jobs.failed],
            "parked": [asdict(e) for e in jobs.parked],
            "receivers": [asdict(r) for r in jobs.receivers],
            "reports": [self.report_entry(r) for r in jobs.reports],
        }
        masked = json.loads(json.dumps(full))
        for row in masked["failed"]:
            for key in ("description", "error"):
                row[key] = self.views.text(row[key], True)
        for row in masked["receivers"]:
            row["url"] = self.views.text(row["url"], True)
        for row in masked["parked"]:
            for key in ("url", "error"):
                row[key] = self.views.text(row[key], True)
        masked["reports"] = self.reports_for(full["reports"], masked=True)
        return full, masked

    def reports_for(self, entries: list[dict[str, Any]], masked: bool) -> list[dict[str, Any]]:
        if not (masked and self.config.web.mask_numbers_for_viewers):
            return entries
        # Reports hold every number in full: viewers see that they exist, not the files.
        return [{**r, "files": [{**f, "url": ""} for f in r["files"]]} for r in entries]

    def report_entry(self, files: ReportFiles) -> dict[str, Any]:
        out = []
        for path in files.paths():
            kind = "xlsx" if path.suffix == ".xlsx" else path.stem.split("-")[-1]
            kind = kind if kind in ("categories", "hours", "xlsx") else "calls"
            size = path.stat().st_size if path.is_file() else 0
            out.append(
                {
                    "name": path.name,
                    "kind": kind,
                    "bytes": size,
                    "url": f"/reports/{quote(path.name)}",
                }
            )
        return {"day": files.day, "files": out}

    async def reports(self, masked: bool) -> list[dict[str, Any]]:
        found = await self.status.reports()
        return self.reports_for([self.report_entry(r) for r in found], masked)

    async def download(self, request: web.Request) -> web.StreamResponse:
        if self.views.masked_for(principal(request)):
            raise ApiError(
                403, "forbidden", "reports hold full numbers; only supervisors may download them"
            )
        name = request.match_info["name"]
        path = await self.status.report_file(name)
        if path is None:
            raise ApiError(404, "not_found", f"no report file {name!r}")
        return web.FileResponse(
            Path(path), headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

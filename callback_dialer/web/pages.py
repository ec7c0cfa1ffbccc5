"""The HTML side of the status page: its two pages, their assets, and the words in two languages.

The page itself is static (``static/index.html`` and ``app.js`` build everything from the API);
only the language and the title are put in on the server, and the sign-in form gets its
labels, message and CSRF token. Every value put into HTML is escaped. The language is
``?lang=`` or the ``cbd_lang`` cookie when it names one we have (``en``, ``ru``), else
``[web] language``; the strings live in ``static/i18n.json``, shared with the page's script
(so the server's charts and the browser use the same words).
"""

from __future__ import annotations

import html
import json
from importlib import resources

from aiohttp import web

from ..config import Config

STATIC = resources.files(__package__).joinpath("static")
LANG_COOKIE = "cbd_lang"
LANGUAGES = ("en", "ru")

# In the code rather than static/: the package data ships html, js, css and json only.
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#2f7ed8"/>'
    '<path d="M10 7c1 0 2 3 2.5 4.5.3 1-.9 1.8-1.6 2.4 1.3 2.8 3.4 4.9 6.2 6.2.6-.7 1.4-1.9 '
    '2.4-1.6C21 19 24 20 24 21c0 2-2 4-4 4C13 25 7 19 7 12c0-2 2-5 3-5z" fill="#fff"/></svg>'
)


def _static_text(name: str) -> str:
    return STATIC.joinpath(name).read_text("utf-8")


class Pages:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.strings: dict[str, dict[str, str]] = json.loads(_static_text("i18n.json"))

    # ------------------------------------------------------------------ languages

    def language(self, request: web.Request) -> str:
        chosen = request.query.get("lang") or request.cookies.get(LANG_COOKIE)
        return chosen if chosen in LANGUAGES else self.config.web.language

    def t(self, lang: str) -> dict[str, str]:
        return self.strings.get(lang, self.strings["en"])

    # ------------------------------------------------------------------ pages

    async def index(self, request: web.Request) -> web.Response:
        lang = self.language(request)
        page = (
            _static_text("index.html")
            .replace("{{lang}}", lang)
            .replace("{{title}}", html.escape(self.t(lang)["title"]))
        )
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    def login_page(
        self,
        request: web.Request,
        csrf: str,
        message: str = "",
        status: int = 200,
        user: str = "",
    ) -> web.Response:
        lang = self.language(request)
        t = self.t(lang)
        values = {
            "lang": lang,
            "title": t["login_title"],
            "user_label": t["login_user"],
            "password_label": t["login_password"],
            "submit": t["login_submit"],
            "message": message,
            "user": user,
            "csrf": csrf,
            "next": "/",
        }
        page = _static_text("login.html")
        for key, value in values.items():
            page = page.replace("{{" + key + "}}", html.escape(value, quote=True))
        return web.Response(text=page, content_type="text/html", charset="utf-8", status=status)

    # ------------------------------------------------------------------ assets

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {"js": "text/javascript", "css": "text/css", "json": "application/json"}
        kind = types.get(name.rsplit(".", 1)[-1])
        if kind is None or "/" in name or name.startswith("."):
            raise web.HTTPNotFound()
        entry = STATIC.joinpath(name)
        if not entry.is_file():
            raise web.HTTPNotFound()
        response = web.Response(body=entry.read_bytes(), content_type=kind, charset="utf-8")
        # Assets change only with a new version of the program; revalidate each time anyway.
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(
            text=FAVICON, content_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
        )

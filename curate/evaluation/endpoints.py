"""Judge endpoint URLs: joining the chat-completions path, and keeping credentials out of
every line printed and every file written.

A key may come three ways: the environment variable ``--judge-key-env`` names (the
documented way), the URL's user-info (``https://user:KEY@host/v1``), or a query parameter
an Azure-style endpoint expects (``?api-key=KEY``). The last two are sent as given, but
every message, metrics file and ``*.details.json`` shows the URL through :func:`redact`,
with each credential replaced by ``***``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

CHAT_PATH = "/chat/completions"
HIDDEN = "***"
# query keys that carry a credential (api-key, api_key, apikey, key, token, access_token,
# sig, signature, secret, password, auth, code, ...)
_SECRET_KEY = re.compile(
    r"(^|[-_])(api[-_]?key|key|token|secret|password|passwd|pwd|sig|signature|auth|"
    r"authorization|code|credential|credentials|session)$|^(x-)?api[-_]?key$",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key.strip()))


def join_chat_path(url: str) -> str:
    """``url`` with ``/chat/completions`` appended to its *path* (a query string stays
    after it: ``https://h/openai/deployments/d?api-version=1`` →
    ``https://h/openai/deployments/d/chat/completions?api-version=1``)."""
    parts = urlsplit(url.strip())
    path = parts.path.rstrip("/")
    if not path.endswith(CHAT_PATH):
        path += CHAT_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def split_credentials(url: str) -> tuple[str, str | None]:
    """(``url`` without its user-info, the key the user-info held): ``user:KEY@host`` gives
    ``KEY``, ``KEY@host`` gives ``KEY``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    key = password or user or None
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)), key


def redact(url: str) -> str:
    """``url`` safe to print or store: user-info and credential query values → ``***``."""
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return HIDDEN
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{HIDDEN}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, HIDDEN if is_secret_key(k) else v) for k, v in pairs], quote_via=quote, safe="*"
        )
    return urlunsplit(
        (parts.scheme, netloc, parts.path, query, "" if not parts.fragment else HIDDEN)
    )


def redact_text(text: str, url: str, secrets: tuple[str | None, ...] = ()) -> str:
    """``text`` (an error line, a server's reply) with ``url``'s credentials and every
    string in ``secrets`` hidden, wherever they appear."""
    hidden = [s for s in secrets if s]
    parts = urlsplit(str(url))
    if "@" in parts.netloc:
        hidden.append(parts.netloc.rsplit("@", 1)[0])
    hidden += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_secret_key(k)]
    for secret in sorted({s for s in hidden if len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, HIDDEN).replace(quote(secret, safe=""), HIDDEN)
    return text

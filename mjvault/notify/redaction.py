"""Notification URLs with their secrets taken out, for logs, errors and `--json` output.

An Apprise URL carries its credential in the URL itself, and not always in the same part: a
password (``mailto://user:pass@host``), the path (``discord://id/token``,
``json://host/hook-token``), a query value (``?token=…``) or even the "host" (``tgram://``
takes the bot token there). So a URL is shown as ``scheme://host/…`` only when its host is
a real network host, else as ``scheme://…``; user, password, path and query never.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qsl, unquote, urlsplit

from mjvault.redact import MASK, register_secret

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
# Parts at least this long go to the log masker whatever they look like. Shorter ones (down to
# the masker's own minimum) only when they are not a plain word: an ntfy topic `mjv-alert9`
# or a hook token `tok-8c21e6` is the whole credential, but masking `notify`, `webhook` or a
# mail login `archiver` everywhere would mangle log lines.
_MIN_TOKEN = 12
_PLAIN_WORD = re.compile(r"^[a-z]+$")


def _network_host(host: str) -> bool:
    """True for an IP address, ``localhost`` or a DNS name of at least two labels."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        pass
    labels = host.split(".")
    return len(labels) >= 2 and len(host) <= 253 and all(_LABEL.match(x) for x in labels)


def _split(url: str) -> tuple[str, str, str]:
    """(scheme, netloc after any user info, the rest) without urlsplit's port checks, which
    fail on a host part that is really a token (``tgram://123:ABC/…``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "", "", url
    netloc, slash, tail = rest.partition("/")
    netloc, _, query = netloc.partition("?")
    return scheme.lower(), netloc.rpartition("@")[2], slash + tail + ("?" + query if query else "")


def redact_url(url: str) -> str:
    """``scheme://host[:port]/…`` when the host is a network host; else ``scheme://…``."""
    scheme, netloc, _rest = _split(url)
    if not scheme:
        return "(not a URL)"
    host, _, port = netloc.rpartition(":") if netloc.count(":") == 1 else (netloc, "", "")
    if netloc.startswith("["):  # [::1]:8080
        host, _, port = netloc.rpartition("]:") if "]:" in netloc else (netloc, "", "")
        host = host + "]" if port else host
    if host and _network_host(host.lower()) and (not port or port.isdigit()):
        shown = f"{host.lower()}:{port}" if port else host.lower()
        return f"{scheme}://{shown}/…"
    return f"{scheme}://…"


def url_parts(url: str) -> list[str]:
    """Every part of ``url`` that may be a credential, whatever its length: user, password,
    a host that is no network host, each path segment and each query value."""
    found: list[str] = []
    _scheme, _sep, rest = url.partition("://")
    netloc = rest.partition("/")[0].partition("?")[0]
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, _, password = userinfo.partition(":")
        found += [unquote(password), password, unquote(user), user]
    if host and redact_url(url).endswith("://…"):
        found.append(host)
    try:
        parts = urlsplit(url)
        path, query = parts.path, parts.query
    except ValueError:
        path, query = "", ""
    found += [p for s in path.split("/") for p in (s, unquote(s))]
    found += [v for _k, v in parse_qsl(query)]
    return list(dict.fromkeys(part for part in found if part))


def mask_url_parts(text: str, url: str) -> str:
    """``text`` (a service's reason for refusing ``url``) with each of the URL's parts masked,
    however short: such a reason quotes the ntfy topic or the hook path, the whole credential.
    A part is masked where it stands alone, not inside a longer word."""
    for part in sorted(url_parts(url), key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(part)}(?![A-Za-z0-9])", MASK, text)
    return text


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` for the log masker: the URL itself, its password, and the other
    parts of :func:`url_parts` that are long or not a plain word (see ``_MIN_TOKEN``)."""
    found = [url]
    netloc = url.partition("://")[2].partition("/")[0].partition("?")[0]
    userinfo, at, _host = netloc.rpartition("@")
    password = userinfo.partition(":")[2] if at else ""
    found += [password, unquote(password)]
    found += [
        part
        for part in url_parts(url)
        if len(part) >= _MIN_TOKEN or not _PLAIN_WORD.match(part.lower())
    ]
    return [part for part in found if part]


def register_url_secrets(urls: list[str] | tuple[str, ...]) -> None:
    """Tell the log masker (:mod:`mjvault.redact`) the credential parts of every URL; it
    keeps those of at least its own minimum length."""
    for url in urls:
        for part in url_secrets(url):
            register_secret(part)

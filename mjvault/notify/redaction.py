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

from mjvault.redact import register_secret

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
# Parts shorter than this are left out of the masker: masking "path" or "notify" everywhere
# would mangle log lines, and credentials are longer.
_MIN_TOKEN = 12


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


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that may be credentials, for the log masker: the URL itself, its
    password, a host that is no network host, and long user names, path parts and query
    values."""
    found = [url]
    scheme, sep, rest = url.partition("://")
    netloc = rest.partition("/")[0].partition("?")[0]
    userinfo, at, host = netloc.rpartition("@")
    if at:
        # A password always; a user name only when it is long enough to be a key (Pushover's
        # `user_key@token`): a mail login such as `archiver` is no secret, and masking it
        # would mangle every log line that says "midjourney-archiver".
        user, _, password = userinfo.partition(":")
        found += [unquote(password), password]
        found += [name for name in (unquote(user), user) if len(name) >= _MIN_TOKEN]
    if host and redact_url(url).endswith("://…"):
        found.append(host)
    try:
        parts = urlsplit(url)
        path, query = parts.path, parts.query
    except ValueError:
        path, query = "", ""
    found += [unquote(p) for p in path.split("/") if len(p) >= _MIN_TOKEN]
    found += [v for _k, v in parse_qsl(query) if len(v) >= _MIN_TOKEN]
    return [part for part in found if part]


def register_url_secrets(urls: list[str] | tuple[str, ...]) -> None:
    """Tell the log masker (:mod:`mjvault.redact`) the credential parts of every URL."""
    for url in urls:
        for part in url_secrets(url):
            register_secret(part)

"""The errors the user sees, each one line saying what happened and what to do about it.

Kept together so the wording stays consistent and docs/midjourney-client.md can quote it. None
of these ever includes a cookie value: they name cookies, never show them.
"""

from __future__ import annotations

from mjvault.config.types import ByteSize
from mjvault.errors import AuthError, ChallengeError, ConfigError, SourceError
from mjvault.sources.midjourney.settings import ENV_CF_CLEARANCE, ENV_TOKEN, ENV_USER_AGENT

BROWSER_COOKIES = "Developer tools -> Application -> Cookies -> midjourney.com"


class SessionRefused(AuthError):
    """401/403 from the API: the cookie was sent and refused."""


class LoginPage(AuthError):
    """HTML or a redirect where JSON was expected: the session was not accepted."""


class MissingCredentials(AuthError):
    """No token or no user id was given at all."""


def refused(cookie_name: str, renewal: str | None = None) -> AuthError:
    if renewal:
        return SessionRefused(f"the session cookie was refused or has expired: {renewal}")
    return SessionRefused(
        f"the session cookie was refused or has expired: copy a fresh `{cookie_name}` from your "
        f"browser ({BROWSER_COOKIES}) and set {ENV_TOKEN}"
    )


def login_page(cookie_name: str, renewal: str | None = None) -> AuthError:
    if renewal:
        return LoginPage(
            "Midjourney answered with its login page instead of JSON, so it did not accept "
            f"the session: {renewal}"
        )
    return LoginPage(
        "Midjourney answered with its login page instead of JSON, so it did not accept the "
        f"session: copy a fresh `{cookie_name}` from your browser ({BROWSER_COOKIES}) "
        f"and set {ENV_TOKEN}"
    )


def missing_token(cookie_name: str) -> AuthError:
    return MissingCredentials(
        f"no Midjourney session token: set {ENV_TOKEN} to the `{cookie_name}` cookie from your "
        f"browser ({BROWSER_COOKIES}), pass --cookies FILE, or run `mjvault auth login`"
    )


def missing_user_id() -> AuthError:
    return MissingCredentials(
        "no Midjourney user id: set MIDJOURNEY_USER_ID (a UUID: on midjourney.com it is "
        "props.initialAuthUser.midjourney_id in the page's __NEXT_DATA__) or run "
        "`mjvault auth login`"
    )


def challenge(what: str) -> ChallengeError:
    return ChallengeError(
        f'Cloudflare answered {what} with its browser check ("Just a moment...") instead of '
        "data: open midjourney.com in your browser, then copy its `cf_clearance` cookie "
        f"(--cookies FILE or {ENV_CF_CLEARANCE}) and its exact User-Agent (--user-agent or "
        f"{ENV_USER_AGENT}); Cloudflare binds the two to each other and to your IP address, "
        "and the cookie lasts about 30 minutes"
    )


def rate_limited_too_long(seconds: float, where: str) -> SourceError:
    return SourceError(
        f"{where} asked us to wait {seconds:.0f} s before the next request (HTTP 429, "
        "rate limited); try again later or lower --max-rps"
    )


def gave_up(what: str, attempts: int, problem: str) -> SourceError:
    return SourceError(f"{what}: gave up after {attempts} attempts (last: {problem})")


def unexpected_status(status: int, what: str) -> SourceError:
    return SourceError(f"Midjourney answered HTTP {status} to {what}")


def bad_header() -> ConfigError:
    # Never the library's own message: it would quote the header, cookie value and all.
    return ConfigError(
        "a request header could not be sent: the User-Agent or a cookie holds characters HTTP "
        "does not allow"
    )


class BadListingPage(SourceError):
    """A listing page that cannot be used: not JSON of the listing's shape, or far too large."""


class PageTooLarge(SourceError):
    """An API answer larger than ``sync.max_page_bytes``; refused while it was being read."""


def page_too_large(limit: int) -> PageTooLarge:
    return PageTooLarge(
        f"the answer is larger than sync.max_page_bytes ({ByteSize().to_text(limit)}), far more than a "
        "real listing page; reading stopped there (raise the setting only if pages really are "
        "that large)"
    )


def bad_page(path: str, number: int, problem: str) -> BadListingPage:
    return BadListingPage(f"listing page {number} from {path} is not usable: {problem}")

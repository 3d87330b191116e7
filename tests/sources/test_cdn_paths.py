"""Where image requests may go: normalised paths under the CDN base, allowed hosts only."""

from __future__ import annotations

import io

import pytest
from mj_scripted_server import Answer, ScriptedServer

from mjvault.config import load_config
from mjvault.errors import ConfigError, DownloadError
from mjvault.model import MediaRef
from mjvault.sources.midjourney import ClientSettings, MediaMissing, MidjourneyClient
from mjvault.sources.midjourney.download import UnsafeMediaPath, media_url
from mjvault.sources.midjourney.transport import CdnHosts
from mjvault.testing.images import make_png

CDN = "https://cdn.midjourney.com"


@pytest.mark.parametrize(
    ("base", "path", "url"),
    [
        (CDN, "j/0_0.png", f"{CDN}/j/0_0.png"),
        (CDN, "/j/./0_0.png", f"{CDN}/j/0_0.png"),
        (CDN, "x/../j/0_0.png", f"{CDN}/j/0_0.png"),
        ("http://h/cdn", "cdn/j/0_0.png", "http://h/cdn/j/0_0.png"),
        ("http://h/cdn/", "j/0_0.png", "http://h/cdn/j/0_0.png"),
        ("http://h/a/b", "a/b/j/0_0.png", "http://h/a/b/j/0_0.png"),
        ("http://h/a/b", "a/j/0_0.png", "http://h/a/b/a/j/0_0.png"),  # not the whole base path
        (CDN, "https://elsewhere/x.png", "https://elsewhere/x.png"),  # the transport judges it
    ],
)
def test_media_urls(base: str, path: str, url: str) -> None:
    assert media_url(base, path) == url
    assert media_url(base, MediaRef(0, path, "image")) == url


@pytest.mark.parametrize(
    "path",
    ["../etc/passwd", "j/../../etc/passwd", "cdn/j/../../../etc/passwd", "%2e%2e/x", "a%2f..", ""],
)
def test_paths_that_leave_the_base_are_refused(path: str) -> None:
    with pytest.raises(UnsafeMediaPath, match="refused: the image path"):
        media_url("http://h/cdn", path)


def test_cdn_hosts() -> None:
    hosts = CdnHosts("http://127.0.0.1:8080/cdn", ["cdn.midjourney.com", "mirror.example:8443"])
    assert hosts.allows("http://127.0.0.1:8080/x")
    assert not hosts.allows("http://127.0.0.1:8081/x")  # another service on the same machine
    assert hosts.allows("https://cdn.midjourney.com/j/0_0.png")
    assert hosts.allows("http://CDN.midjourney.com/j/0_0.png")
    assert not hosts.allows("https://cdn.midjourney.com:444/j")
    assert hosts.allows("https://mirror.example:8443/j") and not hosts.allows(
        "https://mirror.example/j"
    )
    assert not hosts.allows("file:///etc/passwd") and not hosts.allows("https://evil.example/")


def test_cdn_hosts_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ClientSettings().cdn_hosts == ("cdn.midjourney.com",)
    with pytest.raises(ConfigError, match="not a host name"):
        ClientSettings(cdn_hosts=("https://x/",))
    loaded = load_config(environ={"MJVAULT_SOURCE_CDN_HOSTS": "A.example, b.example:81"})
    assert loaded.config.source.cdn_hosts == ("a.example", "b.example:81")


def test_redirects_within_the_cdn_are_followed_without_cookies(scripted: ScriptedServer) -> None:
    png = make_png(4)
    scripted.route("/cdn/a/0_0.png", Answer(302, b"", {"Location": "/cdn/b/0_0.png"}))
    scripted.route("/cdn/b/0_0.png", Answer(200, png, {"Content-Type": "image/png"}))
    settings = ClientSettings(cdn_base=scripted.base + "/cdn", timeout=5.0, max_retries=0)
    with MidjourneyClient(settings) as client:
        client.transport.client.cookies.set("session", "must-not-travel")
        sink = io.BytesIO()
        result = client.download("a/0_0.png", sink)
    assert sink.getvalue() == png and not result.missing
    assert all("cookie" not in hit.headers for hit in scripted.requests)


def test_a_redirect_loop_ends(scripted: ScriptedServer) -> None:
    scripted.route("/cdn/a/0_0.png", Answer(302, b"", {"Location": "/cdn/a/0_0.png"}))
    settings = ClientSettings(cdn_base=scripted.base + "/cdn", timeout=5.0, max_retries=0)
    with (
        MidjourneyClient(settings) as client,
        pytest.raises(DownloadError, match="redirected cdn/a/0_0.png more than 5 times"),
    ):
        client.download("a/0_0.png", io.BytesIO())
    assert len(scripted.hits("/cdn/a/0_0.png")) == 6


def test_an_escaping_record_path_is_a_result_not_a_request(scripted: ScriptedServer) -> None:
    settings = ClientSettings(cdn_base=scripted.base + "/cdn", timeout=5.0)
    with MidjourneyClient(settings) as client:
        result = client.download(MediaRef(3, "j/../../etc/passwd", "image"), io.BytesIO())
    assert isinstance(result, MediaMissing) and "leaves the CDN base" in result.reason
    assert scripted.requests == []

import json
import os
import signal
import socket
import subprocess
import sys

import httpx

from mjvault.testing.server import V1_SESSION_COOKIE


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mjvault", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_dev_server_prints_exports_serves_and_stops_on_ctrl_c() -> None:
    process = _start(
        "dev-server",
        "--jobs",
        "30",
        "--seed",
        "4",
        env={"MJVAULT_DEV_SERVER_TOKEN": "tok-from-env"},
    )
    try:
        assert process.stdout is not None
        settings = {}
        while len(settings) < 4:
            line = process.stdout.readline()
            assert line.startswith("export "), line
            name, _, value = line[len("export ") :].strip().partition("=")
            settings[name] = value
        assert settings["MIDJOURNEY_SESSION_TOKEN"] == "tok-from-env"
        assert settings["MJVAULT_CDN_BASE"] == settings["MJVAULT_WEB_BASE"] + "/cdn"
        response = httpx.get(
            settings["MJVAULT_WEB_BASE"] + "/api/app/recent-jobs/",
            params={"userId": settings["MIDJOURNEY_USER_ID"], "page": 1, "amount": 50},
            cookies={V1_SESSION_COOKIE: "tok-from-env"},
        )
        assert response.status_code == 200 and len(response.json()) >= 25
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "stopped after 1 requests" in stderr


def test_dev_server_json_settings_and_fault_options() -> None:
    process = _start("--json", "dev-server", "--jobs", "5", "--html-every", "1")
    try:
        assert process.stdout is not None
        lines = []
        while not lines or lines[-1] != "}\n":
            lines.append(process.stdout.readline())
        data = json.loads("".join(lines))
        settings = data["settings"]
        response = httpx.get(
            settings["MJVAULT_WEB_BASE"] + "/api/app/recent-jobs/",
            params={"userId": settings["MIDJOURNEY_USER_ID"]},
            cookies={V1_SESSION_COOKIE: settings["MIDJOURNEY_SESSION_TOKEN"]},
        )
        assert response.headers["content-type"].startswith("text/html")
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_dev_server_bad_options_are_one_line_errors() -> None:
    bad = subprocess.run(
        [sys.executable, "-m", "mjvault", "dev-server", "--fault-targets", "dns"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "--fault-targets" in bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = subprocess.run(
            [sys.executable, "-m", "mjvault", "dev-server", "--jobs", "1", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert busy.returncode != 0 and "Traceback" not in busy.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in busy.stderr


def test_dev_server_lying_cdn_options() -> None:
    process = _start(
        "--json",
        "dev-server",
        "--jobs",
        "6",
        "--rewrite-image-urls",
        "--cdn-prefix",
        "/mirror/mj",
        "--cut-fraction",
        "1",
        "--escaping-image-paths",
        "1",
        "--api-sets-cookie",
    )
    try:
        assert process.stdout is not None
        lines = []
        while not lines or lines[-1] != "}\n":
            lines.append(process.stdout.readline())
        settings = json.loads("".join(lines))["settings"]
        assert settings["MJVAULT_CDN_BASE"] == settings["MJVAULT_WEB_BASE"] + "/mirror/mj"
        token = settings["MIDJOURNEY_SESSION_TOKEN"]
        response = httpx.get(
            settings["MJVAULT_WEB_BASE"] + "/api/app/recent-jobs/",
            params={"userId": settings["MIDJOURNEY_USER_ID"]},
            cookies={V1_SESSION_COOKIE: token},
        )
        assert token in response.headers["set-cookie"]
        paths = [p for record in response.json() for p in record["image_paths"]]
        assert any(p.endswith("/../../../etc/passwd") for p in paths)
        image = next(p for p in paths if p.endswith(".png"))
        assert image.startswith(settings["MJVAULT_CDN_BASE"] + "/")
        served = httpx.get(image)
        assert served.status_code == 200
        assert int(served.headers["content-length"]) == len(served.content)
        assert not served.content.endswith(b"IEND\xaeB`\x82")  # cut, and the length agrees
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
    assert process.returncode == 0

"""The operator's status page in a real browser (Debian's headless Chromium, driven by Selenium).

A real local cluster runs one API whose single replica takes one request at a time: a long
request holds it, so the requests behind it stay queued while the page is read. The numbers the
page shows must be those of the operator's JSON, and those of `cortex get` and the gateway. A
screenshot of the page is kept in ``$CORTEX_TEST_ARTIFACTS`` (default ``.artifacts/``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from tests.cluster.conftest import ClusterFactory, LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver"
#: headless, and quiet: no GPU, no sandbox (root in a container), and none of the background
#: traffic (updates, sync, QUIC probes) that would knock at a closed network all along the test
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
#: the runtime tests' user server: a ``sleep:N`` body sleeps N seconds before answering
USER_SERVER = str(ROOT / "tests" / "runtime" / "user_server.py")
API = "board"

#: what the page shows, read in one go (the page redraws itself every 5 s)
READ_OVERVIEW = """
const out = {};
for (const section of document.querySelectorAll("section.api")) {
  const field = (node, name) => node.querySelector(`[data-field="${name}"]`).textContent;
  out[section.dataset.api] = {
    ready: field(section, "ready"), requested: field(section, "requested"),
    queued: field(section, "queued"), in_flight: field(section, "in_flight"),
    completed: field(section, "completed"), failed: field(section, "failed"),
    depth_lines: section.querySelectorAll('figure[data-chart="depth"] svg polyline').length,
    requests: [...section.querySelectorAll("tr[data-request-id]")].map(row => ({
      id: row.dataset.requestId, status: field(row, "status"), latency: field(row, "latency")})),
  };
}
return out;
"""


def artifacts() -> Path:
    folder = Path(os.environ.get("CORTEX_TEST_ARTIFACTS") or ROOT / ".artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail(f"chromium or chromedriver is missing under CI ({INSTALL})")
        pytest.skip(f"chromium is not installed ({INSTALL})")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # the driver named explicitly: Selenium Manager never runs (it would try to download one)
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def until(what: str, check: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def deploy_board(cluster: LocalCluster) -> None:
    api = {
        "name": API,
        "kind": "AsyncAPI",
        "pod": {"max_concurrency": 1, "containers": [{"name": "api", "command": [sys.executable, USER_SERVER, "api"]}]},
        "autoscaling": {"min_replicas": 1, "max_replicas": 1},
    }
    config = cluster.workdir / "board.yaml"
    config.write_text(yaml.safe_dump([api]))
    cluster.cortex("deploy", str(config))
    cluster.wait_live(API)


def submit(cluster: LocalCluster, body: str) -> str:
    rid: str = httpx.post(f"{cluster.gateway}/{API}", content=body.encode(), timeout=10).json()["id"]
    time.sleep(0.002)  # ids sort by their millisecond: one each, so the page's order is known
    return rid


def gateway_status(cluster: LocalCluster, rid: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{cluster.gateway}/{API}/{rid}", timeout=10).json()
    return data


def history_points(operator: str) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = httpx.get(f"{operator}/status/apis/{API}/history", timeout=10).json()["points"]
    return points


def latency_text(latency: float | None) -> str:
    """What the page shows for a latency under a minute (its ``seconds()``)."""
    return "—" if latency is None else f"{latency:.3f} s"


def test_the_status_page_shows_what_the_api_says(make_cluster: ClusterFactory, browser: webdriver.Chrome) -> None:
    cluster = make_cluster("--autoscaler-tick", "0.2", "--grace-period", "1")
    deploy_board(cluster)
    done = [submit(cluster, "sleep:0") for _ in range(2)]
    for rid in done:
        assert cluster.wait_result(API, rid)["status"] == "completed"
    running = submit(cluster, "sleep:60")  # holds the one replica's one slot for the rest of the test
    until("the long request to start", lambda: gateway_status(cluster, running)["status"] == "in_progress")
    waiting = [submit(cluster, "sleep:0") for _ in range(3)]
    cancelled = waiting.pop(0)
    assert httpx.delete(f"{cluster.gateway}/{API}/{cancelled}", timeout=10).json()["status"] == "cancelled"
    statuses = {rid: gateway_status(cluster, rid)["status"] for rid in [*done, running, cancelled, *waiting]}
    assert statuses == {
        **dict.fromkeys(done, "completed"),
        running: "in_progress",
        cancelled: "cancelled",
        **dict.fromkeys(waiting, "in_queue"),
    }

    status_url = cluster.json("cluster", "info")["status_url"]
    operator = status_url.removesuffix("/status")

    def board() -> dict[str, Any]:
        apis = httpx.get(f"{operator}/status/apis", timeout=10).json()["apis"]
        (found,) = [api for api in apis if api["name"] == API]
        return dict(found)

    # the queue is as the gateway says (read live), and a tick has recorded it for the charts
    until("the queue to settle", lambda: (board()["queue"]["queued"], board()["queue"]["in_flight"]) == (2, 1))
    until("a tick to record it", lambda: any(p["queued"] == 2 for p in history_points(operator)))

    browser.get(status_url)
    until("the page to load", lambda: browser.find_elements(By.CSS_SELECTOR, 'body[data-state="ready"] section.api'))
    shown = browser.execute_script(READ_OVERVIEW)[API]
    api = board()
    listed = httpx.get(f"{operator}/status/apis/{API}/requests", timeout=10).json()["requests"]
    browser.save_screenshot(str(artifacts() / "status-page.png"))

    # replicas: the page = the status JSON = `cortex get`
    (got,) = cluster.json("get", API)
    assert (shown["ready"], shown["requested"]) == (str(api["replicas"]["ready"]), str(api["replicas"]["requested"]))
    assert (api["replicas"]["ready"], api["replicas"]["requested"]) == (got["status"]["ready"], 1)
    # the queue: the page = the status JSON = what the gateway says of each request
    assert (shown["queued"], shown["in_flight"]) == (str(api["queue"]["queued"]), str(api["queue"]["in_flight"]))
    assert (api["queue"]["queued"], api["queue"]["in_flight"]) == (2, 1)
    assert shown["depth_lines"] == 2  # queued and in flight, drawn from the history
    # the counts by status: the page = the status JSON = `cortex get`'s queue summary
    assert (shown["completed"], shown["failed"]) == ("2", "0")
    assert api["requests"] == got["queue"]["requests"]
    assert got["queue"]["requests"] == {"in_queue": 2, "in_progress": 1, "completed": 2, "failed": 0, "cancelled": 1}
    assert got["queue"]["replicas"]["busy"] == 1
    # recent requests, newest first: the page = the status JSON = the gateway
    assert [(r["id"], r["status"], r["latency"]) for r in shown["requests"]] == [
        (r["id"], r["status"], latency_text(r["latency"])) for r in listed
    ]
    assert [r["id"] for r in listed] == [*reversed(waiting), cancelled, running, *reversed(done)]
    assert {r["id"]: r["status"] for r in listed} == statuses

    # a request's detail, one click away
    browser.find_element(By.CSS_SELECTOR, f'tr[data-request-id="{done[0]}"] a').click()
    until(
        "the request's detail",
        lambda: browser.find_elements(
            By.CSS_SELECTOR, f'body[data-state="ready"] section.request[data-request-id="{done[0]}"]'
        ),
    )
    detail = browser.find_element(By.CSS_SELECTOR, "section.request")
    assert detail.find_element(By.CSS_SELECTOR, '[data-field="status"]').text == "completed"
    result = gateway_status(cluster, done[0])["result"]
    assert json.loads(detail.find_element(By.CSS_SELECTOR, '[data-field="result"]').text) == result
    browser.save_screenshot(str(artifacts() / "status-page-request.png"))
    for name in ("status-page.png", "status-page-request.png"):
        assert (artifacts() / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_with_an_operator_token_the_page_uses_the_one_cluster_info_gives(
    make_cluster: ClusterFactory, browser: webdriver.Chrome, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "status-token-5c2e8a9b1d7f"
    monkeypatch.setenv("CORTEX_OPERATOR_TOKEN", token)
    cluster = make_cluster("--grace-period", "1")
    monkeypatch.delenv("CORTEX_OPERATOR_TOKEN")
    status_url = cluster.json("cluster", "info")["status_url"]
    page, fragment = status_url.split("#", 1)
    assert fragment == f"token={token}"
    operator = page.removesuffix("/status")
    # the HTML holds no data and is open; its JSON is not, without the token
    assert httpx.get(page, timeout=10).status_code == 200
    assert httpx.get(f"{operator}/status/apis", timeout=10).status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{operator}/status/apis", headers=bearer, timeout=10).json()["apis"] == []

    browser.get(status_url)
    until("the page to load", lambda: browser.find_elements(By.CSS_SELECTOR, 'body[data-state="ready"]'))
    assert "token" not in browser.current_url  # taken off the address bar once kept for the tab
    assert not browser.find_element(By.ID, "error").is_displayed()
    browser.refresh()  # the tab keeps it: the redraws after a reload still authenticate
    until("the page to reload", lambda: browser.find_elements(By.CSS_SELECTOR, 'body[data-state="ready"]'))
    assert browser.find_element(By.CSS_SELECTOR, "body").get_attribute("data-state") == "ready"

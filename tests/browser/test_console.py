"""The web console in a real headless Chromium (the system's package, driven by Playwright) against the real façade
on the session's local Ray: logging in, queues filling and draining, retrying a dead task, a job's log followed to
its end, a chat through pause and resume, resources and plugins, and tenants that cannot see each other.

Screenshots of each view go to the test's temporary folder, and to ``$RR_CONSOLE_SCREENSHOTS`` when it is set
(``make screenshots`` refreshes the README's, in docs/console)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from ray_runtime.client import RuntimeClient

from ..conftest import unique

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INSTALL = "sudo apt-get install -y chromium"
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason=f"the browser tests need Chromium from the system's packages: {INSTALL}"
)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def open_console(browser, facade, tmp_path):
    """A new browser tab on the console; ``open_console(key)`` logs in with that key. Every request it makes is
    checked to stay on the façade."""
    pages = []
    facade_host = urlparse(facade.url).netloc

    def open_(key: str | None = "alpha", width: int = 1280):
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        elsewhere: list[str] = []
        page.on("request", lambda r: urlparse(r.url).netloc != facade_host and elsewhere.append(r.url))
        page.elsewhere = elsewhere
        page.goto(f"{facade.url}/ui/")
        if key is not None:
            page.fill("#key", facade.keys[key])
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("#who:has-text('tenant')")
        pages.append(page)
        return page

    yield open_
    for page in pages:
        assert page.elsewhere == [], f"the console reached beyond the façade: {page.elsewhere}"
        page.context.close()


def shoot(page, name: str, tmp_path: Path) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
    target = os.environ.get("RR_CONSOLE_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / f"{name}.png", Path(target) / f"{name}.png")


def test_a_wrong_key_is_refused_and_the_key_never_reaches_a_url(open_console, facade):
    page = open_console(key=None)
    page.wait_for_selector("#login", state="visible")  # the script opens the dialog once it finds no key
    page.fill("#key", "rrk_notakey_notasecret")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-problem:has-text('not accepted')")
    page.fill("#key", facade.keys["alpha"])
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#who:has-text('tenant alpha')")
    assert facade.keys["alpha"] not in page.url
    assert page.evaluate("sessionStorage.getItem('ray_runtime.key')") == facade.keys["alpha"]


def test_a_queue_fills_and_drains_on_the_overview_as_a_worker_runs(open_console, facade, tmp_path):
    queue = unique("ui")
    page = open_console()
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        client.enqueue_many(queue, [{"n": n} for n in range(30)])
        row = page.locator("table[aria-label=queues] tr", has_text=queue)
        row.locator("td:nth-child(2)", has_text="30").wait_for()  # 30 ready

        def work() -> None:
            while leases := client.claim(queue, "ui-worker", max_tasks=5):
                for lease in leases:
                    time.sleep(0.05)
                    client.complete(lease.attempt_id, {"double": lease.task.input["n"] * 2})

        worker = threading.Thread(target=work)
        worker.start()
        row.locator("td:nth-child(6)", has_text="30").wait_for(timeout=60_000)  # 30 succeeded
        worker.join(60)
    assert row.locator("td:nth-child(2)").inner_text() == "0"
    label = page.get_attribute("svg.chart", "aria-label")
    assert int(label.split()[0]) >= 30  # the throughput chart counted them
    shoot(page, "overview", tmp_path)
    page.click(f"text={queue}")
    page.wait_for_selector("table[aria-label=tasks] tbody tr")
    assert page.locator("table[aria-label=tasks] tbody tr").count() == 30


def test_agent_lightning_rollouts_show_their_progress_on_the_overview(open_console, facade):
    page = open_console()
    with facade.client("alpha") as http:
        ids = [unique("ro") for _ in range(3)]
        http.post("/agl/api/rollouts", json=[{"rollout_id": r, "input": 0} for r in ids]).raise_for_status()
        for rollout_id, states in ((ids[0], ["running"]), (ids[1], ["running", "succeeded"])):
            for state in states:
                http.patch(f"/agl/api/rollouts/{rollout_id}", json={"status": {"state": state}}).raise_for_status()
        counts = http.get("/api/v1/queues/agl.rollouts/stats").json()["counts"]
    assert counts.get("leased", 0) >= 1 and counts.get("succeeded", 0) >= 1
    row = page.locator("table[aria-label=queues] tr", has_text="agl.rollouts")
    row.locator("td:nth-child(3)", has_text=str(counts["leased"])).wait_for()  # running: leased to their timeout
    row.locator("td:nth-child(6)", has_text=str(counts["succeeded"])).wait_for()
    assert row.locator("td:nth-child(2)").inner_text() == str(counts.get("queued", 0))  # queuing: ready


def test_a_dead_task_shows_its_attempts_is_retried_and_succeeds(open_console, facade, tmp_path):
    queue = unique("dead")
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        task_id = client.enqueue(queue, {"try": 1}, max_attempts=1)
        [lease] = client.claim(queue, "ui-worker")
        client.fail(lease.attempt_id, {"type": "ValueError", "message": "bad luck"})
        page = open_console()
        page.goto(f"{facade.url}/ui/#/task/{task_id}")
        page.wait_for_selector("h1:has-text('dead')")
        attempts = page.locator("table[aria-label=attempts]")
        assert "bad luck" in attempts.inner_text() and "failed" in attempts.inner_text()
        shoot(page, "task", tmp_path)
        page.click("button:has-text('Retry')")
        page.wait_for_selector("h1:has-text('queued')")
        [lease] = client.claim(queue, "ui-worker")
        client.complete(lease.attempt_id, {"ok": True})
        page.wait_for_selector("h1:has-text('succeeded')")
    assert '"ok": true' in page.inner_text("main")


def test_a_jobs_log_is_followed_live_to_its_end(open_console, facade, tmp_path):
    script = "python -c \"import time\nfor i in range(25):\n    print(f'step {i}', flush=True)\n    time.sleep(0.1)\""
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        job = client.submit_job(script)
        page = open_console()
        page.goto(f"{facade.url}/ui/#/job/{job.submission_id}")
        page.wait_for_selector("#job-log[data-ended]", timeout=120_000)
        log = page.inner_text("#job-log")
        assert [f"step {i}" for i in range(25)] == [line for line in log.splitlines() if line.startswith("step ")]
        page.wait_for_selector("h1:has-text('SUCCEEDED')")
        shoot(page, "job", tmp_path)
        page.goto(f"{facade.url}/ui/#/jobs")
        page.wait_for_selector(f"text={job.submission_id}")


def test_a_chat_goes_through_pause_and_resume_with_its_memory(open_console, facade, tmp_path):
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        session = client.create_session("chat.assistant", metadata={"ui": "yes"})
        page = open_console()
        page.goto(f"{facade.url}/ui/#/session/{session.id}")
        page.wait_for_selector("#chat-input:enabled")
        page.fill("#chat-input", "My name is Ada")
        page.press("#chat-input", "Enter")
        page.wait_for_selector("#chat-turns:has-text('Nice to meet you, Ada.')")
        page.click("button:has-text('Pause')")
        page.wait_for_selector("#session-status:has-text('paused')")
        page.wait_for_selector("#chat-turns:has-text('goodbye (paused)')")
        assert page.is_disabled("#chat-input")
        page.click("button:has-text('Resume')")
        page.wait_for_selector("#session-status:has-text('active')")
        page.wait_for_selector("#chat-input:enabled")
        page.fill("#chat-input", "What is my name?")
        page.press("#chat-input", "Enter")
        page.wait_for_selector("#chat-turns:has-text('Your name is Ada.')")
        page.wait_for_selector("table[aria-label=transcript] tbody tr:nth-child(2)")
        assert "chat.assistant · 2 turns · " in page.inner_text("#view p")  # the count agrees with the transcript
        shoot(page, "session", tmp_path)
        client.close_session(session.id)


def test_resources_diff_versions_and_plugins_offer_their_actions(open_console, facade, tmp_path):
    prompt = unique("Q")
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        client.add_resources({"prompt": {"resource_type": "prompt_template", "template": f"{prompt}: {{q}}"}})
        client.update_resources({"llm": {"resource_type": "llm", "endpoint": "http://llm:8000/v1", "model": "tiny"}})
    page = open_console()
    page.goto(f"{facade.url}/ui/#/resources")
    diff = page.locator("table[aria-label='resources diff']")
    diff.locator("tr.added", has_text="llm").wait_for()
    shoot(page, "resources", tmp_path)
    page.goto(f"{facade.url}/ui/#/plugins")
    page.click("table[aria-label=plugins] >> text=hello")
    page.wait_for_selector("h2:has-text('greet')")
    params = page.locator("table[aria-label='parameters of greet']").inner_text()
    assert "name" in params and "excited" in params
    shoot(page, "plugin", tmp_path)


def test_another_tenants_objects_appear_nowhere(open_console, facade):
    queue = unique("mine")
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        task_id = client.enqueue(queue, {"secret": True})
        session = client.create_session("agents.counter")
        job = client.submit_job("echo private")
    page = open_console("beta")
    for view in ("overview", "queues", "tasks", "jobs", "sessions"):
        page.goto(f"{facade.url}/ui/#/{view}")
        page.wait_for_selector("main h1")
        page.wait_for_timeout(500)  # one refresh of the view has run
        text = page.inner_text("main")
        for secret in (queue, task_id, session.id, job.submission_id):
            assert secret not in text, (view, secret)
    for path in (f"task/{task_id}", f"job/{job.submission_id}", f"session/{session.id}"):
        page.goto(f"{facade.url}/ui/#/{path}")
        page.wait_for_selector("#problem:has-text('does not exist')")
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        client.close_session(session.id)


def test_a_read_key_sees_but_cannot_act(open_console, facade):
    queue = unique("look")
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        task_id = client.enqueue(queue, {"n": 1}, max_attempts=1)
        [lease] = client.claim(queue, "w")
        client.fail(lease.attempt_id, "nope", retryable=False)
        session = client.create_session("agents.counter")
    page = open_console("alpha-read")
    page.goto(f"{facade.url}/ui/#/task/{task_id}")
    page.wait_for_selector("h1:has-text('failed')")
    assert page.locator("button:has-text('Retry')").count() == 0
    page.goto(f"{facade.url}/ui/#/session/{session.id}")
    page.wait_for_selector("#session-status")
    assert page.is_disabled("#chat-input") and page.locator("button:has-text('Pause')").count() == 0
    with RuntimeClient(facade.url, facade.keys["alpha"]) as client:
        client.close_session(session.id)


def test_the_console_fits_a_phone_width_screen(open_console, facade, tmp_path):
    page = open_console(width=390)
    page.wait_for_selector("#overview-ready")
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than the screen"
    shoot(page, "overview-phone", tmp_path)

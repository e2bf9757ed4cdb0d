"""The dashboard in a real browser: headless Chromium driven by Playwright.

Chromium comes from the ``browser`` fixture (tests/conftest.py): skipped without it,
except with CI=true, where it fails.
Screenshots go to ``test-artifacts/`` (gitignored), for people and CI artifacts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from atomicops.scripts.registry import registry

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture
def superuser(transactional_db, django_user_model):
    return django_user_model.objects.create_superuser("admin", "admin@example.test", "pw")


@pytest.mark.parametrize("real_server", ["redis"], indirect=True)
def test_dashboard_in_chromium(superuser, live_server, real_client, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dashboard = f"{live_server.url}/admin/atomicops/dashboard/"

    page.goto(dashboard)  # anonymous: the admin login, then back here
    assert "/admin/login/" in page.url
    page.fill("#id_username", "admin")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_url(dashboard)

    shown = page.eval_on_selector_all(
        "tr.atomicops-script",
        "rows => rows.map(r => [r.dataset.script, r.querySelector('code.sha').textContent])",
    )
    assert dict(shown) == {script.name: script.sha for script in registry}
    assert len(shown) == len(registry)
    assert page.locator(".breadcrumbs").inner_text().split("›")[-1].strip() == "Scripts dashboard"
    page.screenshot(path=str(ARTIFACTS / "atomicops-dashboard.png"), full_page=True)

    page.click("input[name=flush]")
    page.wait_for_selector("#atomicops-flush-table")
    results = page.eval_on_selector_all(
        "tr.atomicops-flush-row", "rows => rows.map(r => [r.dataset.script, r.dataset.result])"
    )
    assert dict(results) == {script.name: "recovered" for script in registry}
    assert page.inner_text("#atomicops-flush-summary") == (
        f"All {len(registry)} scripts passed the flush check."
    )
    assert all(real_client.script_exists(*(script.sha for script in registry)))
    page.screenshot(path=str(ARTIFACTS / "atomicops-flush-check.png"), full_page=True)

    # Narrow screen, dark mode: the page must not scroll sideways (wide tables scroll in
    # their own box) and must follow the admin's dark palette.
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(dashboard)
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1
    page.click("#atomicops-scripts details summary")
    background = page.eval_on_selector(
        "pre.atomicops-source", "e => getComputedStyle(e).backgroundColor"
    )
    red, green, blue = (int(part) for part in background[4:-1].split(",")[:3])
    assert max(red, green, blue) < 80, background  # a dark surface, not the light one
    page.screenshot(path=str(ARTIFACTS / "atomicops-dashboard-narrow-dark.png"))

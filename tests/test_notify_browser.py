"""Browser notifications in real Chromium (headless, permission granted): a red incident and
a stage about to be missed raise system notifications through the Notification API."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from ringwatch.contract.topics import EventKind
from tests.test_dashboard_browser import Dash, dash, event, log_in, page  # noqa: F401

# Records each notification the page creates, then lets the real Notification make it.
RECORD = """
(() => {
  const Real = window.Notification;
  window.__notes = [];
  class Recorded extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notes.push({ title, body: (options || {}).body, tag: (options || {}).tag });
    }
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  Recorded.requestPermission = (...a) => Real.requestPermission(...a);
  window.Notification = Recorded;
})();
"""


def test_a_red_incident_and_a_stage_about_to_be_missed_notify(page: Page, dash: Dash) -> None:  # noqa: F811
    page.context.grant_permissions(["notifications"], origin=dash.url)
    page.add_init_script(RECORD)
    log_in(page, dash)
    expect(page.locator("#notify-enable")).to_have_text("通知：已开启")  # the hub default: zh-CN
    page.evaluate("localStorage.setItem('ringwatch.notify.warn_s', '59')")
    dash.send(event(EventKind.SHED, "shed-cam", level="alarm", scores={"fire": 0.9}))
    expect(page.locator("tr.incident[data-kind=shed]").first).to_be_visible(timeout=15_000)
    page.wait_for_function("() => window.__notes.length >= 2", timeout=15_000)
    titles = [n["title"] for n in page.evaluate("window.__notes")]
    assert any(t.startswith("红色预警：") for t in titles), titles
    assert any(t.startswith("物业签收：剩余 ") and t.endswith(" 秒") for t in titles), titles
    page.wait_for_timeout(2500)  # another scan: each warning is shown once
    assert len(page.evaluate("window.__notes")) == len(titles)

"""The HTML report: one self-contained page that opens with no errors and fetches nothing."""

from __future__ import annotations

import re

import pytest

from test_report_support import light_run, load_pages, png_pixels
from timewait.report.html import render_html

# Anything that would make a browser fetch: src/href attributes, CSS url() and @import, to http(s) or
# protocol-relative addresses.
EXTERNAL = re.compile(r"""(?:\b(?:src|href|srcset|action|poster)\s*=\s*["']?\s*(?:https?:)?//)"""
                      r"""|(?:url\(\s*["']?\s*(?:https?:)?//)|(?:@import)""", re.IGNORECASE)


@pytest.mark.parametrize("name", ["nc-timewait", "tw-recycle-nat", "max-rate"])
def test_page_refers_to_nothing_outside_itself(name: str) -> None:
    page = render_html(light_run(name))
    assert page.startswith("<!DOCTYPE html>")
    assert EXTERNAL.findall(page) == []
    for tag in ("<link", "<iframe", "<object", "<embed"):
        assert tag not in page.lower()
    # Scripts only inline (the explorer's, and its data): none is loaded from anywhere.
    scripts = re.findall(r"<script\b[^>]*>", page, re.IGNORECASE)
    assert scripts and all("src" not in tag.lower() for tag in scripts), scripts
    assert 'src="data:image/png;base64,' in page  # the plot travels inside the page


def test_page_tells_the_run() -> None:
    r = light_run("nc-timewait")
    page = render_html(r)
    assert "timewait run nc-timewait" in page                     # how to reproduce it
    assert page.count("PASS") == len(r.checks) and "FAIL" not in page
    assert "<svg" in page and "TIME_WAIT 60 s" in page           # the ladder, inline
    assert "timer:(timewait,59sec,0)" in page                     # ss at a key moment


def test_page_without_a_trace_says_so() -> None:
    page = render_html(light_run("max-rate"))
    assert "No packets in the trace" in page and 'id="tw-ladder-box"' not in page  # no ladder figure
    assert '<svg class="series"' in page  # the telemetry's series still are drawn


def test_page_opens_in_chromium_with_no_errors_and_no_network(tmp_path) -> None:
    """Two reports, and a control page with one remote image, opened in one headless Chromium.

    How "no requests to the network" is checked: Chromium is driven over the
    DevTools protocol (``--remote-debugging-pipe``) with the Network domain
    enabled, so every request the page makes -- document, images, styles,
    fonts, whether it succeeds or not -- arrives as a ``Network.requestWillBeSent``
    event with its URL; the test asserts all of them are ``file:`` or ``data:``.
    This sees requests directly rather than scraping verbose logs, whose wording
    changes between Chromium versions. The browser also runs with
    ``--host-resolver-rules="MAP * ~NOTFOUND"``, so even a request that slipped
    through could not leave the machine. The control page proves the check
    works: its ``http://`` image shows up as a request and as a failed load.
    Console errors, uncaught exceptions and error log entries come from the
    Runtime and Log domains.
    """
    pages = []
    for name in ("nc-timewait", "max-rate"):
        path = tmp_path / f"{name}.html"
        path.write_text(render_html(light_run(name)), encoding="utf-8")
        pages.append(path)
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><head><meta charset="utf-8"><title>control</title></head><body>'
                       '<img src="http://timewait.invalid/x.png" alt="remote"></body></html>', encoding="utf-8")
    probes = (
        "document.title",
        "document.querySelectorAll('#tw-ladder-box svg').length",
        "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length",
        "document.body.innerText.length",
    )
    nc, no_trace, ctl = load_pages([*pages, control], evaluate=probes)

    for rep in (nc, no_trace):
        assert rep.errors == [], rep.errors
        assert rep.requests and all(u.split(":", 1)[0] in ("file", "data") for u in rep.requests), rep.requests
        assert rep.values["Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length"] == 1
        assert rep.values["document.body.innerText.length"] > 500
        assert png_pixels(rep.png).std() > 0.05  # something was drawn
    assert nc.values["document.title"] == "nc-timewait - timewait run"
    assert nc.values["document.querySelectorAll('#tw-ladder-box svg').length"] == 1
    assert no_trace.values["document.querySelectorAll('#tw-ladder-box svg').length"] == 0

    assert "http://timewait.invalid/x.png" in ctl.requests
    assert any("load failed" in e for e in ctl.errors), ctl.errors

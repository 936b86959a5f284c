"""The GTM Custom Template: well-formed sections, and its code driving the real tracker.

GTM's sandbox is not available here, so the template's code runs in the page
with the same APIs (injectScript, createArgumentsQueue, callInWindow, ...)
implemented on window, which is what GTM's implementations do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "gtm" / "footfall.tpl"


def sections() -> dict[str, str]:
    parts = re.split(r"^___([A-Z_]+)___\s*$", TEMPLATE.read_text(), flags=re.M)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def test_template_sections_are_well_formed():
    s = sections()
    assert {
        "INFO",
        "TEMPLATE_PARAMETERS",
        "SANDBOXED_JS_FOR_WEB_TEMPLATE",
        "WEB_PERMISSIONS",
    } <= set(s)
    assert json.loads(s["INFO"])["containerContexts"] == ["WEB"]
    names = {p["name"] for p in json.loads(s["TEMPLATE_PARAMETERS"])}
    names |= {
        q["name"] for p in json.loads(s["TEMPLATE_PARAMETERS"]) for q in p.get("subParams", [])
    }
    code = s["SANDBOXED_JS_FOR_WEB_TEMPLATE"]
    used = set(re.findall(r"data\.(\w+)", code)) - {"gtmOnSuccess", "gtmOnFailure"}
    assert used <= names, used - names
    perms = {p["instance"]["key"]["publicId"] for p in json.loads(s["WEB_PERMISSIONS"])}
    required = set(re.findall(r"require\('(\w+)'\)", code))
    assert {"injectScript", "createArgumentsQueue", "callInWindow", "copyFromWindow"} <= required
    assert {"inject_script", "access_globals"} <= perms


SHIM = """
window.__gtmRequire = function (name) {
  const get = path => path.split('.').reduce((o, k) => o && o[k], window)
  return {
    injectScript(url, ok, fail, token) {
      if (document.querySelector('script[data-token="' + token + '"]')) return ok()
      const s = document.createElement('script')
      s.src = url; s.async = true; s.dataset.token = token; s.onload = ok; s.onerror = fail
      document.head.append(s)
    },
    copyFromWindow: get,
    createArgumentsQueue(fn, arr) {
      window[fn] = function () { get(arr).push(arguments) }
      window[fn].q = []
      return window[fn]
    },
    callInWindow(path, ...args) { return get(path)(...args) },
    makeTableMap(rows, k, v) { const m = {}; rows.forEach(r => m[r[k]] = r[v]); return m },
    getType(x) { return Array.isArray(x) ? 'array' : x === null ? 'null' : typeof x },
  }[name]
}
"""


@pytest.mark.browser
def test_template_code_loads_the_tracker_and_sends(site):
    code = sections()["SANDBOXED_JS_FOR_WEB_TEMPLATE"]
    url = site.base + "/t/gtm.html"
    html = f"<!doctype html><title>GTM</title><script>{SHIM}</script><body style='margin:0'><p>gtm</p></body>"
    site.context.route(
        url, lambda route: route.fulfill(status=200, body=html, content_type="text/html")
    )
    page = site.page
    page.goto(url)
    base = {
        "scriptUrl": site.tracker_url,
        "writeKey": site.write_key,
        "scroll": False,
        "engagement": False,
        "dataLayerEvents": "signup",
    }
    run = (
        "data => new Promise((ok, fail) => { data.gtmOnSuccess = ok; data.gtmOnFailure = fail; "
        "(function (require, data) {" + code + "})(window.__gtmRequire, data) })"
    )
    page.evaluate(run, {**base, "command": "init"})
    page.evaluate(
        run,
        {
            **base,
            "command": "track",
            "eventName": "Signup Completed",
            "eventProperties": [{"key": "plan", "value": "pro"}],
        },
    )
    page.evaluate(
        run,
        {
            **base,
            "command": "identify",
            "userId": "u-1",
            "traits": [{"key": "tier", "value": "gold"}],
        },
    )
    page.evaluate("dataLayer.push({event: 'signup', source: 'gtm'})")
    site.wait(lambda rs: len(rs) >= 4)
    rows = site.settle()
    assert page.evaluate("document.querySelectorAll('script[data-token]').length") == 1
    got = sorted(
        (r["type"], r["event"], json.dumps(r["properties"] or r["traits"], sort_keys=True))
        for r in rows
        if r["type"] != "page"
    )
    assert ("track", "Signup Completed", '{"plan": "pro"}') in got
    assert ("track", "signup", '{"source": "gtm"}') in got
    assert any(t == "identify" for t, _, _ in got)
    assert len([r for r in rows if r["type"] == "page"]) == 1

import pytest

pytestmark = pytest.mark.browser


def test_page_view_stored(site):
    site.open("/t/home.html", "<p>hello</p>")
    rows = site.wait_for(None) if False else site.wait(lambda rs: any(r["type"] == "page" for r in rs))
    page = next(r for r in rows if r["type"] == "page")
    print(page)

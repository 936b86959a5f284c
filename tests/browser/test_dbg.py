def test_dbg(site):
    resps=[]
    site.page.on("response", lambda r: resps.append((r.url, r.status, r.text())) if "/v1/" in r.url else None)
    site.open("/t/q.html", init={"scroll": False})
    site.page.wait_for_timeout(1500)
    print(resps[:2])

"""What a slow connection carries: static files compressed and kept by version, htmx only
on the pages that use it; and what the header shows (the API link, signing out)."""

from __future__ import annotations

import re

from test_web_pages import sign_in
from web_support import PASSWORD, Site


def scripts_of(html: str) -> list[str]:
    return re.findall(r'<script src="([^"]+)"', html)


def test_static_files_are_compressed_and_kept_by_version_and_pages_are_not(site: Site) -> None:
    sign_in(site.client, "dora")
    page = site.client.get("/review")
    htmx = next(src for src in scripts_of(page.text) if "htmx" in src)
    assert re.fullmatch(r"/static/htmx\.min\.js\?v=[0-9a-f]{12}", htmx), htmx

    sent = site.client.get(htmx, headers={"Accept-Encoding": "gzip"})
    assert sent.status_code == 200 and sent.headers["content-encoding"] == "gzip"
    assert int(sent.headers["content-length"]) < len(sent.content) / 2  # 52 kB -> ~17 kB
    assert sent.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert sent.headers["x-content-type-options"] == "nosniff"  # security headers still on
    unversioned = site.client.get("/static/htmx.min.js", headers={"Accept-Encoding": "gzip"})
    assert "cache-control" not in unversioned.headers
    small = site.client.get("/static/favicon.svg", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers  # under GZIP_MIN_BYTES

    # pages (CSRF tokens beside echoed input: BREACH) and exports are never compressed
    again = site.client.get("/review", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in again.headers
    assert again.headers["cache-control"] == "no-store"


def test_htmx_loads_only_where_it_is_used(site: Site) -> None:
    login_page = site.client.get("/login")
    assert not any("htmx" in src for src in scripts_of(login_page.text))
    sign_in(site.client, "alice")
    annotate = site.client.get("/annotate")
    assert not any("htmx" in src for src in scripts_of(annotate.text))
    assert any("annotate.js" in src for src in scripts_of(annotate.text))


def test_only_doctors_and_admins_see_the_api_link(site: Site) -> None:
    sign_in(site.client, "alice")
    assert 'href="/docs"' not in site.client.get("/annotate").text
    site.client.cookies.clear()
    sign_in(site.client, "dora")
    assert 'href="/docs"' in site.client.get("/review").text


def test_signing_in_lands_on_the_work_and_signing_out_says_so(site: Site) -> None:
    page = site.client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    form = {"username": "alice", "password": PASSWORD, "csrf_token": token[1]}
    signed_in = site.client.post("/login", data=form, follow_redirects=False)
    assert signed_in.headers["location"] == "/annotate"  # not "/", then a second redirect
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', site.client.get("/annotate").text)
    assert csrf
    out = site.client.post("/logout", data={"csrf_token": csrf[1]}, follow_redirects=True)
    assert out.url.path == "/login"
    assert "You have signed out." in out.text

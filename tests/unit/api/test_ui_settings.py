"""`[ui]` in the config: checked at start-up, and served to the dashboard."""

from __future__ import annotations

import pytest
from litestar.testing import create_test_client

from treadle.config import ConfigError, UiSettings, load_settings
from treadle.modules.ui import ui_routes

JAEGER = "http://localhost:16686/trace/{trace_id}"


def test_the_trace_url_template_comes_from_the_environment() -> None:
    """TREADLE_UI__TRACE_URL_TEMPLATE sets it; unset it is empty (no links)."""
    assert load_settings(environ={}).ui.trace_url_template == ""
    env = {"TREADLE_UI__TRACE_URL_TEMPLATE": JAEGER}
    assert load_settings(environ=env).ui.trace_url_template == JAEGER


@pytest.mark.parametrize(
    "template",
    ["javascript:alert('{trace_id}')", "http://localhost:16686/trace/", "localhost/{trace_id}"],
)
def test_a_template_that_is_not_an_http_link_to_a_trace_is_refused(template: str) -> None:
    """A non-http(s) scheme or a template without `{trace_id}` fails at start-up, by key."""
    with pytest.raises(ConfigError) as raised:
        load_settings(environ={"TREADLE_UI__TRACE_URL_TEMPLATE": template})
    assert raised.value.key == "ui.trace_url_template"


@pytest.mark.parametrize(("template", "served"), [(JAEGER, JAEGER), ("", None)])
def test_the_page_reads_its_settings_at_ui_settings_json(template: str, served: str | None) -> None:
    """/ui/settings.json answers the template, null when unset (not the index page)."""
    with create_test_client(route_handlers=ui_routes(UiSettings(trace_url_template=template))) as c:
        response = c.get("/ui/settings.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"trace_url_template": served}

"""What `dropj annotate` logs of a participant's browser: its name and version, never a cut-off User-Agent."""

from __future__ import annotations

import pytest

from dropj_datasets.app.web.annotate import browser_name

CHROME = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 "
          "Safari/537.36")


@pytest.mark.parametrize("agent, said", [
    (CHROME, "Chrome 131 on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
     "Safari/537.36 Edg/131.0.2903.86", "Edge 131 on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
     "Safari/605.1.15", "Safari 17 on macOS"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
     "Mobile/15E148 Safari/604.1", "Safari 17 on iOS"),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox 133 on Linux"),
    ("curl/8.0", "curl/8.0"),
    ("", "no user agent"),
    ("Firefox/1\x1b[2J\n", "Firefox 1?[2J?"),
])
def test_the_log_names_the_browser(agent, said):
    assert browser_name(agent) == said

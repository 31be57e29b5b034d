"""The live dashboard served by the admin API (GET `/dashboard`).

`web` registers the page, its assets and the server-sent event stream;
`stream` samples the workers' reports for open pages; `traffic` turns two
readings of the request counters into rates and percentiles; `events` keeps
the recent reloads and rotation changes. The page itself (`index.html`,
`dashboard.js`, `dashboard.css`) is plain HTML, JavaScript and inline SVG,
shipped as package data.
"""

from gateway.ops.dashboard.web import DashboardSite

__all__ = ["DashboardSite"]

"""Swagger UI at ``/docs``, from the assets the ``swagger-ui-bundle`` package ships (no CDN)."""

from __future__ import annotations

import html
from pathlib import Path

from starlette.responses import FileResponse, HTMLResponse, Response
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

#: URL of the page; assets are under ``/docs/``.
DOCS_PATH = "/docs"

#: The only files served from the bundle.
ASSETS = frozenset(
    {
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
        "index.css",
        "favicon-16x16.png",
        "favicon-32x32.png",
    }
)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<link rel="stylesheet" href="{base}/swagger-ui.css">
<link rel="icon" type="image/png" href="{base}/favicon-32x32.png" sizes="32x32">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{base}/swagger-ui-bundle.js"></script>
<script src="{base}/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{spec}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout"
}});
</script>
</body>
</html>
"""


def docs_page(*, root_path: str, spec_path: str, title: str) -> Response:
    """The Swagger UI page, pointing at the OpenAPI document."""
    page = _PAGE.format(
        title=html.escape(title),
        base=html.escape(root_path + DOCS_PATH),
        spec=html.escape(root_path + spec_path),
    )
    return HTMLResponse(page)


def asset(name: str) -> Response | None:
    """One bundled asset, or None if ``name`` is not one of :data:`ASSETS`."""
    if name not in ASSETS:
        return None
    path = Path(str(swagger_ui_path)) / name
    return FileResponse(path, headers={"cache-control": "public, max-age=86400"})

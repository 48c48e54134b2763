"""The ops side: what people and scripts read and do.

`api.py` (JSON), `pages.py` and `quarantine_pages.py` (HTML, worked out in `console.py` and
`display.py`), `metrics.py` (Prometheus), `openapi.py` (the API's description),
`health.py` (`/healthz`), and `replay.py` (re-applying stored notices, for the API, the
pages and the CLI alike).
"""

"""The baseline of bench/ingest.py: a Flask app that only parses the JSON body and answers 200.

Served by the same gunicorn.conf.py as jobledger (`gunicorn -c gunicorn.conf.py
bench.bare_app:app`), so the ratio of the two measures what verifying, parsing and
recording a notice costs, not the server or the load generator.
"""

import json

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/hooks/<vendor>/<service>")
def receive(vendor: str, service: str):
    """Parse the body and acknowledge it."""
    doc = json.loads(request.get_data(cache=False))
    return jsonify(ok=True, event_type=doc.get("EventType")), 200


@app.get("/healthz")
def healthz():
    """Say the process is up."""
    return jsonify(ok=True)

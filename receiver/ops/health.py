"""Liveness: answered without touching the database."""

from flask import Blueprint, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """Say the process is up."""
    return jsonify(ok=True)

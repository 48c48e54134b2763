"""jobledger's Flask app: provider callbacks in, JSON and HTML out, and the commands.

Inbound: `hooks` (provider HTTP callbacks: verify, parse, record, acknowledge).
Read side: `api` (JSON), `pages` (HTML), `metrics`, `openapi`, `health`.
Plumbing: `config`, `db` (the request's ledger), `auth`, `errors`, `logs`.
Long-running workers (one Procfile line each): `workers/`. Every command: `cli`.
Provider formats (pure verify/parse): `providers/`.
"""

from flask import Flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.middleware.proxy_fix import ProxyFix

from . import config


def create_app(test_config=None):
    """Build the app: defaults, then RECEIVER_* settings (or `test_config`), then blueprints.

    :raises config.ConfigError: a malformed or incomplete setting, named in the message
    """
    app = Flask(__name__)
    app.config.from_mapping(config.defaults())
    if test_config is None:
        app.config.update(config.from_environ())
    else:
        app.config.update(test_config)
    config.validate(app.config)
    if app.config["PROXY_HOPS"]:
        # Behind the shipped nginx config the socket peer is nginx (or nobody, on a Unix
        # socket): the client's address and scheme are in the headers nginx replaces.
        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    if isinstance(app.json, DefaultJSONProvider):  # Flask's default: keep keys in built order
        app.json.sort_keys = False

    from . import cli, db, errors, logs
    from .inbound import hooks
    from .ops import api, endpoints_api, health, metrics, pages

    logs.configure()
    db.init_app(app)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(endpoints_api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(metrics.bp)
    errors.init_app(app)
    cli.init_app(app)
    return app

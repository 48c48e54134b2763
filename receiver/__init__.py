"""jobledger's Flask app: provider notices in, JSON and HTML out, and the commands.

The folders follow a notice: `inbound/` (the doors: HTTP hooks, MNS, Tencent pull),
`providers/` (pure verify/parse per sender), `background/` (polls, deadlines, alerts),
`ops/` (API, pages, metrics, replay), `serving/` (what only gunicorn loads). Here: the
factory, settings (`config`), the request's ledger (`db`, `pgpool`), `auth`, `errors`,
`logs`, and every command (`cli`). docs/architecture.md maps it all.
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

    from . import auth, cli, db, errors, logs, params
    from .inbound import hooks
    from .ops import (
        api,
        endpoint_pages,
        endpoints_api,
        health,
        html,
        metrics,
        pages,
        provider_health,
        quarantine_pages,
    )

    logs.configure()
    logs.remember_secrets(logs.secrets_of(app.config, config.SECRETS))
    db.init_app(app)
    auth.init_app(app)  # before anything reads the request: its rules hold for every route
    params.init_app(app)
    app.register_blueprint(hooks.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(endpoints_api.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(provider_health.bp)
    app.register_blueprint(pages.bp)
    app.register_blueprint(quarantine_pages.bp)
    app.register_blueprint(endpoint_pages.bp)
    html.init_app(app)
    app.register_blueprint(metrics.bp)
    errors.init_app(app)
    cli.init_app(app)
    return app

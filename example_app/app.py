"""A small studio: image (fal), text (Anthropic) and speech (ElevenLabs) through Flask.

Copy this file as a starting point. Each provider is called from the
browser through its own proxy route, which adds the key on the server. A
provider whose key is not set is answered by the package's fake on
127.0.0.1, so the whole page (and each of its three panels) runs offline:

    FAL_KEY             image panel, /api/fal/proxy
    ANTHROPIC_API_KEY   text panel,  /api/anthropic/v1/messages
    ELEVENLABS_API_KEY  speech panel, /api/elevenlabs/v1/text-to-speech/<voice>/stream

Every call is metered (``/metrics``) and held to a budget per visitor and in
total; ``/api/usage`` tells the page what the visitor has left.

What each panel asks for: FAL_MODEL (the one endpoint the fal route allows),
TEXT_MODEL (the Claude model the page requests) and VOICE_ID (the one voice
the speech route allows).
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

import requests
from flask import Flask, render_template, session

from flask_fal_proxy import create_blueprint
from flask_fal_proxy.providers import create_provider_blueprint

MODEL = "fal-ai/flux/schnell"
# Claude models retire on a schedule (claude-sonnet-4-5 on 2026-11-30); TEXT_MODEL overrides.
TEXT_MODEL = "claude-sonnet-5-5"
# "George", one of ElevenLabs' premade voices.
VOICE = "JBFqnCBsd6RMkjVDRZzb"


def _outbound(app: Flask, key_env: str, port_env: str, fake_class: Any) -> requests.Session | None:
    """The session for one provider: its real URL, or a fake on loopback when there is no key.

    End-to-end tests run the fakes in their own process, to read what they
    received, and point the app at them with ``<PROVIDER>_FAKE_PORT``; the
    key variable is then the fake's key.
    """
    from flask_fal_proxy.testing import loopback_session

    port = os.environ.get(port_env)
    if port:
        return loopback_session(int(port))
    if os.environ.get(key_env):
        return None
    fake = fake_class(key=f"example-offline-{key_env.lower()}").start()
    app.config[key_env] = fake.key
    app.logger.warning(
        "%s is not set: using the embedded %s on %s", key_env, fake_class.__name__, fake.base_url
    )
    return fake.session()


def create_app() -> Flask:
    from flask_fal_proxy.testing import FakeAnthropic, FakeElevenLabs, FakeFal

    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY")
    if not app.config["SECRET_KEY"]:
        # Fine for one process; with several workers each would reject the
        # others' session cookies, so set SECRET_KEY in production.
        app.config["SECRET_KEY"] = secrets.token_hex(32)
        app.logger.warning("SECRET_KEY is not set: using a random per-process key")
    app.config["FAL_MODEL"] = os.environ.get("FAL_MODEL", MODEL)
    app.config["TEXT_MODEL"] = os.environ.get("TEXT_MODEL", TEXT_MODEL)
    app.config["VOICE_ID"] = os.environ.get("VOICE_ID", VOICE)
    logging.basicConfig(level=logging.INFO)

    def visitor_has_session(request: Any) -> bool:
        # Only browsers that loaded our page (and so hold our session cookie).
        return session.get("visitor") is not None

    guarded: dict[str, Any] = {
        "allow_unauthorized_requests": False,
        "is_authenticated": visitor_has_session,
    }
    app.register_blueprint(
        create_blueprint(
            session=_outbound(app, "FAL_KEY", "FAL_PROXY_FAKE_PORT", FakeFal),
            # Only the model this page uses; anything else gets 403.
            allowed_endpoints=[f"{app.config['FAL_MODEL']}/**"],
            **guarded,
        )
    )
    app.register_blueprint(
        create_provider_blueprint(
            "anthropic",
            session=_outbound(app, "ANTHROPIC_API_KEY", "ANTHROPIC_FAKE_PORT", FakeAnthropic),
            # Messages only: no token counting, no batches, no files.
            allowed_paths=["v1/messages"],
            **guarded,
        )
    )
    app.register_blueprint(
        create_provider_blueprint(
            "elevenlabs",
            session=_outbound(app, "ELEVENLABS_API_KEY", "ELEVENLABS_FAKE_PORT", FakeElevenLabs),
            # Speech in the one voice this page offers; no voice management.
            allowed_paths=[f"v1/text-to-speech/{app.config['VOICE_ID']}/stream"],
            **guarded,
        )
    )

    @app.get("/")
    def index() -> str:
        session.setdefault("visitor", secrets.token_hex(8))
        return render_template(
            "index.html",
            model=app.config["FAL_MODEL"],
            text_model=app.config["TEXT_MODEL"],
            voice=app.config["VOICE_ID"],
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    _track_spend(app)
    return app


def _track_spend(app: Flask) -> None:
    """Each visitor may spend ``USAGE_USD_PER_DAY`` a day, everyone ``USAGE_USD_PER_MONTH``.

    Spend is counted per process unless ``USAGE_STORAGE_URI`` names a Redis
    server, which every worker and instance then shares (docs/USAGE.md).
    """
    from flask_fal_proxy.usage import Budget, track_usage

    track_usage(
        app,
        identify=lambda request: session.get("visitor"),
        budgets=[
            Budget(float(os.environ.get("USAGE_USD_PER_DAY", "5")), per="day", scope="user"),
            Budget(float(os.environ.get("USAGE_USD_PER_MONTH", "200")), per="month", scope="total"),
        ],
        storage_uri=os.environ.get("USAGE_STORAGE_URI", "memory://"),
    )


app = create_app()

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), threaded=True)

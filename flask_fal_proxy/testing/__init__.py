"""Offline stand-ins for the providers, for the example app and your own tests.

Each fake serves its provider's shapes on 127.0.0.1 and records what it
received; ``LoopbackAdapter`` delivers the proxy's real ``https://`` calls to
it, so the proxy under test is the one that runs in production.

    fake = FakeFal(key="test-key").start()
    app.config["FAL_KEY"] = "test-key"
    app.register_blueprint(create_blueprint(session=fake.session()))
"""

from .anthropic import FakeAnthropic
from .elevenlabs import FakeElevenLabs
from .fal import FakeFal, RecordedCall
from .fal_openapi import OPENAI_MODELS, openapi_document
from .loopback import LoopbackAdapter, loopback_session

__all__ = [
    "OPENAI_MODELS",
    "FakeAnthropic",
    "FakeElevenLabs",
    "FakeFal",
    "LoopbackAdapter",
    "RecordedCall",
    "loopback_session",
    "openapi_document",
]

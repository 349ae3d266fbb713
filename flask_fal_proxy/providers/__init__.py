"""Key-holding routes for the providers a browser editor calls beside fal.

``create_provider_blueprint("anthropic")`` serves ``/api/anthropic/<path>``
from ``https://api.anthropic.com/<path>`` with ``x-api-key`` set on the
server; ElevenLabs and OpenAI come the same way, and any other provider is a
``ProviderSpec``. Every route uses the fal route's relay, so streaming,
header hygiene and the URL checks are the same code.
"""

from .blueprint import ProviderConfig, create_provider_blueprint, provider_blueprint
from .spec import ANTHROPIC, ELEVENLABS, OPENAI, PROVIDERS, ProviderSpec

__all__ = [
    "ANTHROPIC",
    "ELEVENLABS",
    "OPENAI",
    "PROVIDERS",
    "ProviderConfig",
    "ProviderSpec",
    "create_provider_blueprint",
    "provider_blueprint",
]

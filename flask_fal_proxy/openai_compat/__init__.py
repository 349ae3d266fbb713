"""OpenAI's images API in front of fal: any OpenAI client, fal's models, one server-held key.

Clients send ``POST /v1/images/generations`` (or ``/v1/images/edits``) with
an OpenAI body and their access key; each configured model is a fal
endpoint whose own OpenAPI schema decides how ``size`` and ``n`` are
translated, and the job runs on fal's queue with the server's fal keys.

    app.register_blueprint(create_openai_blueprint(
        models={"flux-dev": "fal-ai/flux/dev"},
        access_keys=["a-key-for-clients"],
        fal_keys=[os.environ["FAL_KEY"]],
    ))

``python -m flask_fal_proxy.openai_compat`` serves it alone (see docs/OPENAI.md).
"""

from .blueprint import OpenAIConfig, create_openai_blueprint, openai_blueprint
from .errors import OpenAIError

__all__ = ["OpenAIConfig", "OpenAIError", "create_openai_blueprint", "openai_blueprint"]

"""The example studio's settings: the Claude model it asks for, and TEXT_MODEL to change it."""

from __future__ import annotations

import importlib
import typing
from pathlib import Path
from types import ModuleType

import pytest
from anthropic.types.model_param import ModelParam

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def studio(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """example_app.app with every key set, so that no embedded fake starts."""
    for name in ("FAL_KEY", "ANTHROPIC_API_KEY", "ELEVENLABS_API_KEY"):
        monkeypatch.setenv(name, f"unused-{name.lower()}")
    monkeypatch.setenv("SECRET_KEY", "studio-settings")
    monkeypatch.delenv("TEXT_MODEL", raising=False)
    monkeypatch.syspath_prepend(str(ROOT))
    return importlib.import_module("example_app.app")


def _sdk_models() -> set[str]:
    (names, _) = typing.get_args(ModelParam)
    return set(typing.get_args(names))


def test_the_default_claude_model_is_one_the_sdk_still_lists(studio: ModuleType) -> None:
    """claude-sonnet-4-5 reached its end of life on 2026-11-30 and left the SDK's list."""
    assert studio.TEXT_MODEL in _sdk_models(), sorted(_sdk_models())


def test_the_page_asks_for_the_default_model_or_text_model(
    studio: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = studio.create_app().test_client().get("/").get_data(as_text=True)
    assert f'data-model="{studio.TEXT_MODEL}"' in page
    monkeypatch.setenv("TEXT_MODEL", "claude-opus-5-5")
    page = studio.create_app().test_client().get("/").get_data(as_text=True)
    assert 'data-model="claude-opus-5-5"' in page

"""Tests of the provider routes, CORS and rate limits (a package, so its conftest is its own)."""

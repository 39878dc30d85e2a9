"""Helpers for the browser tests: a real uvicorn server in a thread, Debian's Chromium via Playwright."""

"""Routers: `api` (JSON under /api) and `pages` (server-rendered HTML)."""

"""Serving: the `Recommender` apps load, the HTTP app, batch recommendations, export, and the `textrec` command."""

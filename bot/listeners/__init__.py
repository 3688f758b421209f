"""Bolt listeners. Each module has ``register(app, deps)``; every listener acks first and
hands slow work to ``deps.tasks``."""

"""The bot's own HTTP endpoints beside /slack/events: the decision API, its OpenAPI document,
health and metrics.
"""

"""Agents on a LangGraph Server: the bot as the Slack face of a deployment ([[deployments]])."""

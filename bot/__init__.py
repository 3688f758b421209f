"""Slack approvals for LangGraph: a Bolt app that turns interrupt() into an in-channel approval."""

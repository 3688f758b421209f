"""The Slack Web API port the engine and the outbox call, and the user groups the rules name."""

"""The Slack side: the Bolt app, its door (/slack/events), payload checks, listeners, the Web API
client, user groups and the manifest.
"""

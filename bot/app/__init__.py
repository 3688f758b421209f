"""The Slack app people talk to: its door (/slack/events, payload checks), Bolt and its listeners,
what /approvals shows, and the manifest. Listeners reach the store only through the engine.
"""

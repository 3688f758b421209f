"""Slack ids: an uppercase letter saying what it is, then uppercase ASCII letters and digits.

One definition for the door (bot/app/ingress.py checks every id in a payload), the policy file
(bot/policy/parse.py checks every id it names) and the bot's own checks (a ``--as`` user, an
API request's user). Always used with ``fullmatch``: ``$`` would accept a trailing newline.
"""

from __future__ import annotations

import re

USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
GROUP_ID = re.compile(r"S[A-Z0-9]{2,20}")  # a user group ("subteam")
CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,20}")  # a public or private channel
CONVERSATION_ID = re.compile(r"[CDG][A-Z0-9]{2,20}")  # a channel or a DM
TEAM_ID = re.compile(r"[TE][A-Z0-9]{2,20}")
ENTERPRISE_ID = re.compile(r"E[A-Z0-9]{2,20}")
VIEW_ID = re.compile(r"V[A-Z0-9]{2,20}")
APP_ID = re.compile(r"A[A-Z0-9]{2,20}")

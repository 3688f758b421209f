"""A local Slack workspace: Web API, signed callbacks, Socket Mode and a browser page."""

from .callbacks import Delivery
from .server import LocalSlack
from .webapi import Call

__all__ = ["Call", "Delivery", "LocalSlack"]

"""The workspace state: users, conversations, messages, threads, ephemerals, views, home tabs.

Plain in-memory data with Slack's shapes, so every other module (Web API, callbacks, page)
reads and writes the same truth. Every change is announced through `emit` so the page's
event stream and tests can follow along.
"""

from __future__ import annotations

import copy
import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.jsontypes import JSONObject

TEAM_ID = "T0LOCAL01"
TEAM_NAME = "Local Workspace"
TEAM_DOMAIN = "local-workspace"
APP_ID = "A0LOCALAPP"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
BOT_NAME = "approvals"
MAX_MODAL_STACK = 3

# Slack's own objects, as the Web API takes and gives them and this workspace keeps them. No
# types ship for their shapes (slack_sdk passes plain dicts too) and the workspace reads them
# as Slack documents them, so their values stay Any: the names say which object a dict is.
Message = dict[str, Any]
View = dict[str, Any]
Block = dict[str, Any]
Event = dict[str, Any]  # what the browser UI's stream carries
Listener = Callable[[Event, "str | None"], None]


@dataclass
class User:
    """A workspace member (a person or the bot user)."""

    id: str
    name: str
    real_name: str
    is_bot: bool = False
    tz: str = "Europe/London"

    def to_slack(self) -> JSONObject:
        """The `users.info` shape."""
        image = f"https://avatars.local/{self.name}_48.png"
        profile: JSONObject = {
            "real_name": self.real_name,
            "real_name_normalized": self.real_name,
            "display_name": self.name,
            "display_name_normalized": self.name,
            "image_24": image,
            "image_48": image,
            "image_72": image,
            "team": TEAM_ID,
        }
        if self.is_bot:
            profile["bot_id"] = BOT_ID
            profile["api_app_id"] = APP_ID
        user: JSONObject = {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "deleted": False,
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "updated": 1732170000,
        }
        return user


@dataclass
class Conversation:
    """A public channel or a DM between one person and the bot."""

    id: str
    name: str
    members: list[str]
    is_im: bool = False
    user: str | None = None  # the person on the other side of a DM

    def to_slack(self) -> JSONObject:
        """The `conversations.info` shape (abridged to the fields that matter)."""
        if self.is_im:
            return {
                "id": self.id,
                "created": 1732170000,
                "is_im": True,
                "is_org_shared": False,
                "user": self.user,
                "is_user_deleted": False,
                "priority": 0,
            }
        return {
            "id": self.id,
            "name": self.name,
            "name_normalized": self.name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": False,
            "is_archived": False,
            "is_general": False,
            "is_member": BOT_USER_ID in self.members,
            "created": 1732170000,
            "creator": self.members[0] if self.members else "",
            "num_members": len(self.members),
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
        }


@dataclass
class Ephemeral:
    """A message only `user` sees, until the page reloads (Slack keeps them client-side)."""

    channel: str
    user: str
    message: Message


@dataclass
class Usergroup:
    """A user group (`@deploy-approvers`)."""

    id: str
    handle: str
    name: str
    users: list[str] = field(default_factory=list)

    def to_slack(self, include_users: bool = False) -> JSONObject:
        """The `usergroups.list` shape."""
        group: JSONObject = {
            "id": self.id,
            "team_id": TEAM_ID,
            "is_usergroup": True,
            "name": self.name,
            "description": "",
            "handle": self.handle,
            "is_external": False,
            "date_delete": 0,
            "user_count": len(self.users),
        }
        if include_users:
            group["users"] = list(self.users)
        return group


class Workspace:
    """All state of the local workspace, plus the change notifications."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.users: dict[str, User] = {}
        self.conversations: dict[str, Conversation] = {}
        self.usergroups: dict[str, Usergroup] = {}
        self.channel_messages: dict[str, list[Message]] = {}
        self.ephemeral_messages: list[Ephemeral] = []
        self.views: dict[str, View] = {}
        self.view_owner: dict[str, str] = {}
        self.modal_stacks: dict[str, list[str]] = {}
        self.home_views: dict[str, str] = {}
        self.listeners: list[Listener] = []
        self._by_ts: dict[str, tuple[str, Message]] = {}  # ts -> (channel, message)
        self._last_micros = 0
        self._ids = itertools.count(1)

    # -- seeding ---------------------------------------------------------------------------

    def seed(self) -> None:
        """The README's seed: four people, the bot, #deploys, a DM each, deploy-approvers."""
        for user in (
            User("U0ALICE", "alice", "Alice Requester"),
            User("U0BOB", "bob", "Bob Approver"),
            User("U0DAN", "dan", "Dan Approver"),
            User("U0CAROL", "carol", "Carol Supervisor"),
            User(BOT_USER_ID, BOT_NAME, "Approvals", is_bot=True),
        ):
            self.add_user(user)
        self.add_channel("C0DEPLOYS", "deploys", list(self.users))
        self.add_usergroup(Usergroup("S0APPROVERS", "deploy-approvers", "Deploy Approvers"))
        self.usergroups["S0APPROVERS"].users = ["U0BOB", "U0DAN"]

    def add_user(self, user: User) -> User:
        """Add a member; people get their DM with the bot right away."""
        self.users[user.id] = user
        if not user.is_bot:
            dm_id = "D" + user.id[1:]
            self.conversations[dm_id] = Conversation(
                dm_id, user.name, [user.id, BOT_USER_ID], is_im=True, user=user.id
            )
            self.channel_messages.setdefault(dm_id, [])
        return user

    def add_channel(self, channel_id: str, name: str, members: list[str]) -> Conversation:
        """Add a public channel with the given member ids."""
        channel = Conversation(channel_id, name, list(members))
        self.conversations[channel_id] = channel
        self.channel_messages.setdefault(channel_id, [])
        return channel

    def add_usergroup(self, group: Usergroup) -> Usergroup:
        """Add a user group."""
        self.usergroups[group.id] = group
        return group

    # -- lookups ---------------------------------------------------------------------------

    def user(self, ref: str | None) -> User | None:
        """A user by id or name (`alice`, `@alice`, `U0ALICE`)."""
        if not ref or not isinstance(ref, str):
            return None
        if ref in self.users:
            return self.users[ref]
        name = ref.lstrip("@")
        return next((u for u in self.users.values() if u.name == name), None)

    def conversation(self, ref: str | None) -> Conversation | None:
        """A conversation by id, `#name` or name; a user id or name means that user's DM."""
        if not ref or not isinstance(ref, str):
            return None
        if ref in self.conversations:
            return self.conversations[ref]
        if ref.startswith("#"):
            name = ref[1:]
            return next(
                (c for c in self.conversations.values() if not c.is_im and c.name == name), None
            )
        channel = next(
            (c for c in self.conversations.values() if not c.is_im and c.name == ref), None
        )
        if channel:
            return channel
        user = self.user(ref)
        return self.dm_with(user.id) if user and not user.is_bot else None

    def dm_with(self, user_id: str) -> Conversation | None:
        """The DM between a person and the bot."""
        return next((c for c in self.conversations.values() if c.is_im and c.user == user_id), None)

    def channel_of(self, ts: str) -> str | None:
        """Which conversation holds the message with this ts (ts values are unique here)."""
        found = self._by_ts.get(ts)
        return found[0] if found else None

    # -- ids -------------------------------------------------------------------------------

    @property
    def last_micros(self) -> int:
        return self._last_micros

    def restore_messages(
        self, channel_messages: dict[str, list[Message]], last_micros: int
    ) -> None:
        """Put back messages saved by an earlier run (see persist.py), for known channels."""
        for channel, messages in channel_messages.items():
            if channel in self.conversations:
                self.channel_messages[channel] = messages
                for m in messages:
                    self._by_ts[m["ts"]] = (channel, m)
        self._last_micros = max(self._last_micros, last_micros)

    def next_ts(self) -> str:
        """A Slack `ts` from the clock, strictly increasing across the whole workspace."""
        micros = max(int(self.clock() * 1_000_000), self._last_micros + 1)
        self._last_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def new_id(self, prefix: str) -> str:
        """A Slack-looking id such as `V0A1B2C3D4`."""
        return f"{prefix}0{next(self._ids):03d}{secrets.token_hex(3).upper()}"

    # -- notifications ---------------------------------------------------------------------

    def emit(self, event: Event, to_user: str | None = None) -> None:
        """Tell listeners about a change; `to_user` limits it to one person (ephemeral, view)."""
        for listener in list(self.listeners):
            listener(event, to_user)

    def notice(self, user_id: str, text: str) -> None:
        """A client-side notice only that person sees (Slack's grey error lines)."""
        self.emit({"type": "notice", "text": text}, user_id)

    # -- messages --------------------------------------------------------------------------

    def bot_message(self, text: str, blocks: list[Block] | None) -> Message:
        """The shape of a message the app posts."""
        message: Message = {
            "user": BOT_USER_ID,
            "type": "message",
            "ts": "",
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "text": text,
            "team": TEAM_ID,
            "bot_profile": {
                "id": BOT_ID,
                "app_id": APP_ID,
                "name": BOT_NAME,
                "deleted": False,
                "team_id": TEAM_ID,
            },
        }
        if blocks is not None:
            message["blocks"] = blocks
        return message

    def user_message(self, user_id: str, text: str) -> Message:
        """The shape of a message a person types."""
        return {"type": "message", "user": user_id, "text": text, "ts": "", "team": TEAM_ID}

    def post(
        self,
        channel: str,
        message: Message,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
    ) -> Message:
        """Store a new message (or thread reply) and announce it."""
        message["ts"] = self.next_ts()
        parent = self.find_message(channel, thread_ts) if thread_ts else None
        if parent is not None:
            root_ts = parent.get("thread_ts", parent["ts"])
            parent = self.find_message(channel, root_ts) or parent
            message["thread_ts"] = parent["ts"]
            message["parent_user_id"] = parent.get("user", "")
            if reply_broadcast:
                message["subtype"] = "thread_broadcast"
            self._count_reply(parent, message)
        self.channel_messages.setdefault(channel, []).append(message)
        self._by_ts[message["ts"]] = (channel, message)
        event: Event = {"type": "message", "channel": channel, "ts": message["ts"]}
        if "thread_ts" in message:
            event["thread_ts"] = message["thread_ts"]
        self.emit(event)
        if parent is not None:
            self.emit({"type": "message_changed", "channel": channel, "ts": parent["ts"]})
        return message

    def _count_reply(self, parent: Message, reply: Message) -> None:
        """Keep the parent's thread summary (reply_count, reply_users, latest_reply) current."""
        parent["thread_ts"] = parent["ts"]
        parent["reply_count"] = parent.get("reply_count", 0) + 1
        users = parent.setdefault("reply_users", [])
        if reply.get("user") and reply["user"] not in users:
            users.append(reply["user"])
        parent["reply_users_count"] = len(users)
        parent["latest_reply"] = reply["ts"]

    def find_message(self, channel: str, ts: str | None) -> Message | None:
        """A stored channel message (top level or reply)."""
        found = self._by_ts.get(ts or "")
        return found[1] if found and found[0] == channel else None

    def update(
        self,
        channel: str,
        ts: str,
        text: str | None,
        blocks: list[Block] | None,
        editor: str,
    ) -> Message:
        """Edit a stored message in place; absent text/blocks are kept, like chat.update."""
        message = self.find_message(channel, ts)
        if message is None:
            raise KeyError(ts)
        if text is not None:
            message["text"] = text
        if blocks is not None:
            if blocks:
                message["blocks"] = blocks
            else:
                message.pop("blocks", None)
        message["edited"] = {"user": editor, "ts": self.next_ts()}
        event: Event = {"type": "message_changed", "channel": channel, "ts": ts}
        if message.get("thread_ts") and message["thread_ts"] != ts:
            event["thread_ts"] = message["thread_ts"]
        self.emit(event)
        return message

    def delete(self, channel: str, ts: str) -> None:
        """Remove a message (a thread parent with replies stays as a tombstone, as in Slack)."""
        messages = self.channel_messages.get(channel, [])
        message = self.find_message(channel, ts)
        if message is None:
            raise KeyError(ts)
        if message.get("reply_count"):
            message.update({"subtype": "tombstone", "text": "This message was deleted."})
            message.pop("blocks", None)
        else:
            messages.remove(message)
            del self._by_ts[ts]
        self.emit({"type": "message_deleted", "channel": channel, "ts": ts})

    def top_level(self, channel: str) -> list[Message]:
        """Top-level messages (thread parents, plain messages, broadcast replies), oldest first."""
        return [
            m
            for m in self.channel_messages.get(channel, [])
            if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"
        ]

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The parent then its replies, oldest first; empty when there is no such message."""
        parent = self.find_message(channel, ts)
        if parent is None:
            return []
        replies = [
            m
            for m in self.channel_messages.get(channel, [])
            if m.get("thread_ts") == ts and m["ts"] != ts
        ]
        return [parent, *replies]

    # -- ephemerals ------------------------------------------------------------------------

    def post_ephemeral(
        self, channel: str, user_id: str, message: Message, thread_ts: str | None = None
    ) -> Message:
        """Store a message only `user_id` sees and tell only them."""
        message["ts"] = self.next_ts()
        message["ephemeral"] = True
        message["channel"] = channel
        if thread_ts:
            message["thread_ts"] = thread_ts
        self.ephemeral_messages.append(Ephemeral(channel, user_id, message))
        event: Event = {"type": "message", "channel": channel, "ts": message["ts"]}
        event["ephemeral"] = True
        if thread_ts:
            event["thread_ts"] = thread_ts
        self.emit(event, user_id)
        return message

    def find_ephemeral(self, ts: str) -> Ephemeral | None:
        """An ephemeral by its ts."""
        return next((e for e in self.ephemeral_messages if e.message["ts"] == ts), None)

    def replace_ephemeral(self, ts: str, message: Message | None) -> None:
        """Replace (or with None, delete) an ephemeral, as a response_url can."""
        eph = self.find_ephemeral(ts)
        if eph is None:
            raise KeyError(ts)
        if message is None:
            self.ephemeral_messages.remove(eph)
            self.emit({"type": "message_deleted", "channel": eph.channel, "ts": ts}, eph.user)
            return
        message.update({"ts": ts, "ephemeral": True, "channel": eph.channel})
        eph.message = message
        self.emit({"type": "message_changed", "channel": eph.channel, "ts": ts}, eph.user)

    def ephemerals_for(self, user_id: str, channel: str | None = None) -> list[Message]:
        """Ephemerals one person has been shown, oldest first."""
        return [
            e.message
            for e in self.ephemeral_messages
            if e.user == user_id and (channel is None or e.channel == channel)
        ]

    # -- views -----------------------------------------------------------------------------

    def make_view(self, view: View, view_id: str | None = None) -> View:
        """Slack's stored-view shape around what the app sent."""
        view_id = view_id or self.new_id("V")
        stored = {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": view.get("type", "modal"),
            "blocks": copy.deepcopy(view.get("blocks", [])),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(self.clock())}.{secrets.token_hex(4)}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "close": copy.deepcopy(view.get("close")),
            "submit": copy.deepcopy(view.get("submit")),
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }
        if "title" in view:
            stored["title"] = copy.deepcopy(view["title"])
        return stored

    def open_modal(self, user_id: str, view: View) -> View:
        """Open a modal as the root of a fresh stack (views.open)."""
        for old in self.modal_stacks.get(user_id, []):
            self._forget_view(old)
        stored = self.make_view(view)
        self.views[stored["id"]] = stored
        self.view_owner[stored["id"]] = user_id
        self.modal_stacks[user_id] = [stored["id"]]
        self.emit({"type": "view_open", "view": stored}, user_id)
        return stored

    def push_modal(self, user_id: str, view: View) -> View:
        """Push a modal on top of the open stack (views.push / response_action push)."""
        stack = self.modal_stacks.get(user_id) or []
        if not stack:
            return self.open_modal(user_id, view)
        if len(stack) >= MAX_MODAL_STACK:
            raise OverflowError("push_limit_reached")
        stored = self.make_view(view)
        stored["previous_view_id"] = stack[-1]
        stored["root_view_id"] = stack[0]
        self.views[stored["id"]] = stored
        self.view_owner[stored["id"]] = user_id
        stack.append(stored["id"])
        self.emit({"type": "view_open", "view": stored}, user_id)
        return stored

    def replace_view(self, view_id: str, view: View) -> View:
        """Swap a view's content, keeping its id and place (views.update)."""
        old = self.views[view_id]
        stored = self.make_view(view, view_id)
        stored["previous_view_id"] = old["previous_view_id"]
        stored["root_view_id"] = old["root_view_id"]
        if not view.get("external_id"):
            stored["external_id"] = old["external_id"]
        self.views[view_id] = stored
        owner = self.view_owner[view_id]
        if stored["type"] == "home":
            self.emit({"type": "home"}, owner)
        else:
            self.emit({"type": "view_update", "view": stored}, owner)
        return stored

    def close_modal(self, view_id: str, clear: bool = False) -> list[str]:
        """Close a modal (or the whole stack when `clear`); returns the ids closed."""
        owner = self.view_owner.get(view_id)
        stack = self.modal_stacks.get(owner or "", [])
        if view_id not in stack:
            return []
        closing = list(stack) if clear else stack[stack.index(view_id) :]
        for closed in reversed(closing):
            stack.remove(closed)
            self._forget_view(closed)
            self.emit({"type": "view_close", "view_id": closed}, owner)
        return closing

    def _forget_view(self, view_id: str) -> None:
        self.views.pop(view_id, None)
        self.view_owner.pop(view_id, None)

    def publish_home(self, user_id: str, view: View) -> View:
        """Set a person's App Home (views.publish)."""
        view_id = self.home_views.get(user_id)
        stored = self.make_view(view, view_id)
        self.views[stored["id"]] = stored
        self.view_owner[stored["id"]] = user_id
        self.home_views[user_id] = stored["id"]
        self.emit({"type": "home"}, user_id)
        return stored

    def view_by_external_id(self, external_id: str) -> View | None:
        """A live view by the app's external_id."""
        return next((v for v in self.views.values() if v.get("external_id") == external_id), None)

    def open_views(self, user_id: str) -> list[View]:
        """A person's open modal stack, root first."""
        return [self.views[v] for v in self.modal_stacks.get(user_id, [])]

    def home(self, user_id: str) -> View | None:
        """A person's published home view."""
        view_id = self.home_views.get(user_id)
        return self.views.get(view_id) if view_id else None

"""Discord API v10 objects as the fake hands them out: users, roles, guilds, members,
channels, messages, the application and READY. Pure functions of what they show; the
fake's stores (state.py) decide what goes in."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tests.fakes.discord.protocol import Json, iso, snowflake_time

JOINED_AT = "2024-01-01T00:00:00.000000+00:00"


def user_payload(
    user_id: str, name: str, *, bot: bool = False, global_name: str | None = None
) -> Json:
    user: Json = {
        "id": user_id,
        "username": name,
        "discriminator": "0",
        "global_name": global_name if global_name is not None else (None if bot else name),
        "avatar": None,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
        "primary_guild": None,
        "collectibles": None,
    }
    if bot:
        user["bot"] = True
    return user


def current_user(bot_user: Json) -> Json:
    """The bot as GET /users/@me and READY describe it."""
    return {**bot_user, "verified": True, "mfa_enabled": False, "email": None}


def role_payload(role_id: str, name: str, permissions: int, position: int) -> Json:
    return {
        "id": role_id,
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def guild_payload(guild_id: str, spec: Mapping[str, Any], roles: list[Json]) -> Json:
    """A guild as REST returns it, plus the fake's own "channels" list (its channels in
    order, which GET /guilds/{id} leaves out)."""
    return {
        "id": guild_id,
        "name": spec.get("name", f"guild{guild_id}"),
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(spec.get("owner_id", "1")),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 1,
        "explicit_content_filter": 0,
        "roles": roles,
        "emojis": [],
        "stickers": [],
        "features": [],
        "mfa_level": 0,
        "application_id": None,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "safety_alerts_channel_id": None,
        "max_members": 500_000,
        "vanity_url_code": None,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": spec.get("locale", "en-US"),
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
        "channels": [],
    }


def guild_create(guild: Json, members: list[Json]) -> Json:
    """GUILD_CREATE for `guild` (which it updates: pass a copy) with these members."""
    guild.update(
        {
            "joined_at": JOINED_AT,
            "large": False,
            "unavailable": False,
            "member_count": len(members),
            "voice_states": [],
            "members": members,
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
            "lazy": True,
        }
    )
    return guild


def member_payload(roles: list[str]) -> Json:
    """A guild member without its "user"."""
    return {
        "roles": roles,
        "nick": None,
        "avatar": None,
        "banner": None,
        "joined_at": JOINED_AT,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }


def text_channel(guild_id: str, channel_id: str, name: str, position: int) -> Json:
    return {
        "id": channel_id,
        "type": 0,
        "guild_id": guild_id,
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "topic": None,
        "nsfw": False,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "parent_id": None,
        "flags": 0,
    }


def dm_channel(channel_id: str, recipient: Json) -> Json:
    return {
        "id": channel_id,
        "type": 1,
        "last_message_id": None,
        "flags": 0,
        "recipients": [recipient],
    }


def message_payload(
    message_id: str, channel_id: str, author: Json, content: str, mentions: list[Json]
) -> Json:
    """A plain message as REST returns it (no guild_id or member); the time is its id's."""
    return {
        "id": message_id,
        "channel_id": channel_id,
        "type": 0,
        "author": copy.deepcopy(author),
        "content": content,
        "timestamp": iso(snowflake_time(message_id)),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": mentions,
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "components": [],
        "pinned": False,
        "flags": 0,
    }


def application_payload(app_id: str, bot_user: Json, guild_count: int) -> Json:
    return {
        "id": app_id,
        "name": bot_user["username"],
        "icon": None,
        "description": "",
        "summary": "",
        "type": None,
        "bot_public": True,
        "bot_require_code_grant": False,
        "verify_key": "0" * 64,
        "flags": 1 << 19,
        "owner": user_payload("1", "owner"),
        "team": None,
        "bot": bot_user,
        "tags": [],
        "redirect_uris": [],
        "interactions_endpoint_url": None,
        "role_connections_verification_url": None,
        "approximate_guild_count": guild_count,
        "integration_types_config": {"0": {}},
    }


def ready_payload(
    bot_user: Json,
    guild_ids: list[str],
    session_id: str,
    shard: list[int],
    gateway_url: str,
    app_id: str,
) -> Json:
    return {
        "v": 10,
        "user": current_user(bot_user),
        "guilds": [{"id": gid, "unavailable": True} for gid in guild_ids],
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": gateway_url,
        "shard": shard,
        "application": {"id": app_id, "flags": 1 << 19},
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "user_settings": {},
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": ["fake"],
        "auth": {},
        "_trace": ["fake-gateway"],
    }

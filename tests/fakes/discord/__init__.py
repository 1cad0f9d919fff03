"""The fake Discord behind tests/fakes/discord_server.py (import it from there), by part:

- protocol.py: Discord's numbers (ids, permission bits, intents, opcodes, flags);
- payloads.py: the API objects it hands out; records.py: what it records of the bot;
- state.py: the stores (users, guilds, channels, messages, commands, interactions);
- gateway.py: the websocket, sessions, shards, and message events from the test side;
- rest.py: REST plumbing (recording, auth, rate limits, routing, errors);
- resources.py, messages.py, commands.py: the REST endpoints;
- slash_commands.py: a user runs a command; interactions.py: the bot's answers to it;
- server.py: `FakeDiscord`, which composes them, and the `fake_discord` fixture.

Each part is a mixin over the one it builds on (state → gateway → rest → endpoints), so
every attribute a test reads stays on the one `FakeDiscord` object.
"""

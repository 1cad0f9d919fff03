"""The fake Slack behind tests/fakes/slack_server.py (import it from there), by part:

- protocol.py: Slack's conventions (ids, limits, ts values, cursors, parameters);
- events.py: what Slack sends a bot (event callbacks, slash commands, signatures);
- records.py: what the fake records of the bot;
- state.py: the stores (users, channels, history and threads), event payloads, waiting;
- web_api.py: Web API plumbing (recording, tokens, rate limits, failures, stubs);
- messaging.py, files.py: the chat / users / conversations / reactions and files methods;
- socket_mode.py: the Socket Mode connection and the envelopes a test sends through it;
- interactions.py: slash commands and the response URLs they are answered on;
- server.py: `FakeSlack`, which composes them, and the `fake_slack` fixture.

Each part is a mixin over the one it builds on (state → web API → the rest), so every
attribute a test reads stays on the one `FakeSlack` object.
"""

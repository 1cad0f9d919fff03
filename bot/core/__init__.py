"""The core: what the bot does, whatever the platform.

Adapters call `entry.Core` with typed command values (command_values.py) or lines as
typed (text_commands.py, the one parser); the commands check every rule (admin rights,
valid values, consent, prompt limits) so all platforms behave the same. Ingest stores
what the platforms show; jobs, the scheduler and notices run the background work; the
supervisor keeps each platform connected. The core never imports a platform SDK.
"""

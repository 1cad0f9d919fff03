from tests.fakes.discord_server import fake_discord  # noqa: F401  (a fixture for e2e tests)
from tests.fakes.slack_server import fake_slack  # noqa: F401  (a fixture for e2e tests)

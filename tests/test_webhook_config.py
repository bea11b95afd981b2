"""The webhook settings: read into their types, and a bad one is one exact line (exit 2)."""

from __future__ import annotations

import pytest
from procs import ticker

from ticker.config import ConfigError, from_env
from ticker.webhooks.worker import worker_settings

NETWORKS = "comma-separated IP addresses or networks like 127.0.0.1,10.0.0.0/8, none twice"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TICKER_WEBHOOK_RETRY_HORIZON": "0"},
            "TICKER_WEBHOOK_RETRY_HORIZON=0 is not valid: a number of seconds above 0",
        ),
        (
            {"TICKER_WEBHOOK_RETRY_BASE": "nan"},
            "TICKER_WEBHOOK_RETRY_BASE=nan is not valid: a number of seconds above 0",
        ),
        (
            {"TICKER_WEBHOOK_DISABLE_AFTER": "0"},
            "TICKER_WEBHOOK_DISABLE_AFTER=0 is not valid: a whole number, 1 or more",
        ),
        (
            {"TICKER_WEBHOOK_CONCURRENCY": "lots"},
            "TICKER_WEBHOOK_CONCURRENCY=lots is not valid: a whole number, 1 or more",
        ),
        (
            {"TICKER_WEBHOOK_ALLOW_NETWORKS": "127.0.0.0/33"},
            f"TICKER_WEBHOOK_ALLOW_NETWORKS=127.0.0.0/33 is not valid: {NETWORKS}",
        ),
        (
            {"TICKER_WEBHOOK_ALLOW_NETWORKS": "10.0.0.0/8,,::1"},
            f"TICKER_WEBHOOK_ALLOW_NETWORKS=10.0.0.0/8,,::1 is not valid: {NETWORKS}",
        ),
        (
            {"TICKER_WEBHOOK_DELIVERY": "maybe"},
            "TICKER_WEBHOOK_DELIVERY=maybe is not valid: on or off",
        ),
        (
            {"TICKER_WEBHOOK_CONNECT_TIMEOUT": "20"},
            "TICKER_WEBHOOK_CONNECT_TIMEOUT=20 is not valid: a number of seconds above 0, "
            "at most the webhook timeout (15)",
        ),
        (
            {"TICKER_WEBHOOK_TIMEOUT": "2"},
            "TICKER_WEBHOOK_TIMEOUT=2 is not valid: a number of seconds above 0, "
            "at least the connect timeout (5)",
        ),
    ],
)
def test_a_bad_webhook_setting_is_one_exact_line(env, message):
    with pytest.raises(ConfigError) as caught:
        from_env(env)
    assert str(caught.value) == message


def test_good_values_are_read_into_their_types():
    settings = from_env(
        {
            "TICKER_WEBHOOK_DELIVERY": "off",
            "TICKER_WEBHOOK_RETRY_BASE": "0.5",
            "TICKER_WEBHOOK_RETRY_MAX_DELAY": "60",
            "TICKER_WEBHOOK_RETRY_HORIZON": "7200",
            "TICKER_WEBHOOK_DISABLE_AFTER": "5",
            "TICKER_WEBHOOK_CONNECT_TIMEOUT": "1",
            "TICKER_WEBHOOK_TIMEOUT": "3",
            "TICKER_WEBHOOK_CONCURRENCY": "4",
            "TICKER_WEBHOOK_ALLOW_NETWORKS": "10.20.0.0/16, 127.0.0.1",
        }
    )
    assert settings.webhook_delivery is False
    worker = worker_settings(settings)
    assert (worker.policy.base, worker.policy.max_delay) == (0.5, 60)
    assert (worker.policy.horizon, worker.policy.disable_after) == (7200, 5)
    assert (worker.limits.connect_timeout, worker.limits.timeout) == (1, 3)
    assert worker.concurrency == 4
    assert [str(n) for n in worker.allow] == ["10.20.0.0/16", "127.0.0.1/32"]
    defaults = worker_settings(from_env({}))
    assert defaults.policy.horizon == 86400 and defaults.policy.disable_after == 20
    assert defaults.allow == () and from_env({}).webhook_delivery is True


def test_a_bad_setting_stops_the_webhook_command_with_status_2(tmp_path):
    done = ticker(
        "webhooks",
        "list",
        "--db",
        str(tmp_path / "t.db"),
        env={"TICKER_WEBHOOK_RETRY_HORIZON": "-1"},
    )
    assert done.returncode == 2
    assert done.stderr == (
        "ticker: TICKER_WEBHOOK_RETRY_HORIZON=-1 is not valid: a number of seconds above 0\n"
    )

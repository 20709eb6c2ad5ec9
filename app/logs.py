"""Logging set-up with a filter that redacts every configured provider URL from every record."""

from __future__ import annotations

import logging

from app.settings import Settings
from chains.redaction import scrub


class RedactingFilter(logging.Filter):
    def __init__(self, urls: list[str]) -> None:
        super().__init__()
        self.urls = urls

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls:
            record.msg = scrub(record.getMessage(), self.urls)
            record.args = ()
        return True


def configure_logging(settings: Settings) -> None:
    urls = [u for chain in settings.chains for u in chain.urls]
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(urls))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("web3", "aiohttp", "apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

"""`__all__` is exactly the public surface, sorted."""

from __future__ import annotations

import importlib

import flexcredits_sdk as fc
from flexcredits_sdk import wallets


def _isort_order(name: str) -> tuple[bool, bool, str]:
    """isort style: CONSTANTS, then Classes, then functions, each alphabetical."""
    return (not name.isupper(), name[0].islower(), name)


def test_all_is_sorted_and_complete() -> None:
    for module in (fc, wallets):
        exported = module.__all__
        assert exported == sorted(exported, key=_isort_order)
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and getattr(value, "__module__", module.__name__).startswith("flexcredits_sdk")
            and not isinstance(value, type(fc))
        }
        assert set(exported) == public, set(exported) ^ public


def test_the_other_public_modules_provide_every_name_they_list() -> None:
    """otel, planning, server and testing (server imports its names on first use): each name
    in `__all__` resolves to an object, and `__all__` is sorted."""
    for name in ("otel", "planning", "server", "testing"):
        module = importlib.import_module(f"flexcredits_sdk.{name}")
        exported = module.__all__
        assert exported == sorted(exported, key=_isort_order), name
        missing = [each for each in exported if getattr(module, each, None) is None]
        assert missing == [], (name, missing)

"""`__all__` is exactly the public surface, sorted."""

from __future__ import annotations

import flexcredits_sdk as fc
from flexcredits_sdk import wallets


def test_all_is_sorted_and_complete() -> None:
    for module in (fc, wallets):
        exported = module.__all__
        # isort style: CONSTANTS, then Classes, then functions, each alphabetical.
        assert exported == sorted(exported, key=lambda n: (not n.isupper(), n[0].islower(), n))
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and getattr(value, "__module__", module.__name__).startswith("flexcredits_sdk")
            and not isinstance(value, type(fc))
        }
        assert set(exported) == public, set(exported) ^ public


def test_members_are_importable() -> None:
    for name in fc.__all__:
        assert getattr(fc, name) is not None

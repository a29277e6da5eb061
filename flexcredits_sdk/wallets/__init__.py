"""Wallets: where metered actions are booked.

Every wallet answers the same questions (`Wallet`) with the same models, so code and tests can
swap one for another.
"""

from ._http import AsyncHttpWallet, HttpWallet
from ._offline import OfflineWallet
from ._protocol import Sink, Wallet

__all__ = ["AsyncHttpWallet", "HttpWallet", "OfflineWallet", "Sink", "Wallet"]

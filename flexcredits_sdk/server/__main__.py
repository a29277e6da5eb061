"""``python -m flexcredits_sdk.server``: the ``flexcredits wallet`` commands."""

from ._wallet_commands import wallet

if __name__ == "__main__":
    wallet(prog_name="flexcredits wallet")

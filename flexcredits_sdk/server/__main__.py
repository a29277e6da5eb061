"""``python -m flexcredits_sdk.server``: the ``flexcredits wallet`` commands."""

from ._cli import wallet

if __name__ == "__main__":
    wallet(prog_name="flexcredits wallet")

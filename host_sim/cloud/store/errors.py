"""The store's one error type."""


class StoreError(Exception):
    """The store cannot be opened, read or written; str() is one line naming it (never with
    its password)."""

"""The one exception raised by the contract for anything that does not fit it."""


class ContractError(ValueError):
    """A topic or payload does not follow the wire contract; the message says what and where."""

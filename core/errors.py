"""Ringwatch's own exception tree; library errors are translated into these at boundaries.

- :class:`RingwatchError` — base of everything below.
- :class:`ConfigError` — a config file or setting is missing or wrong (start-up stops).
- :class:`ModelError` — a model file is missing, tampered, or cannot be loaded.
- :class:`InputError` — an image, video or stream cannot be read or decoded.
- :class:`~ringwatch.contract.errors.ContractError` — a message does not follow the wire
  contract (it lives in the contract package so the contract stays self-contained).
"""


class RingwatchError(Exception):
    """Base of Ringwatch's errors; the message is meant for the person running it."""


class ConfigError(RingwatchError):
    """A config file or setting is missing or invalid."""


class ModelError(RingwatchError):
    """A model is missing, fails its checksum, or cannot be loaded."""


class InputError(RingwatchError):
    """An input image, video or stream cannot be read."""

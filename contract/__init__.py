"""The wire contract shared by the edge agent and the hub.

Everything that crosses MQTT is built and parsed here: topics (:mod:`.topics`), versioned
payload models (:mod:`.messages`), time-ordered event ids (:mod:`.ids`), the colour order and
colour policy (:mod:`.colours`) and the per-camera zone configuration that the hub pushes to
devices (:mod:`.zones`). Nothing here imports the edge runtime or the hub.
"""

from ringwatch.contract.errors import ContractError

__all__ = ["ContractError"]

"""The wire contract between Flightdeck gateways and the cloud.

Both sides import this package and nothing else of each other, so a change to the contract is a
change here, versioned by the topic prefix (``flightdeck/v1``).
"""

CONTRACT_VERSION = 1

"""The pure simulation model: no clock, no I/O, deterministic for a seed.

Everything here runs in simulated milliseconds since the Unix epoch (UTC) and is advanced by
the caller (:class:`~firmware_sim.core.world.World`). Protocol servers, the backfill and the
tests all read the same model; only how fast time moves differs.
"""

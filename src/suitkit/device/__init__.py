"""The device side: the manifest processor, platform interfaces, the simulated device.

- :class:`~suitkit.device.processor.Processor` runs the Update and Invocation procedures of an
  authenticated envelope over a :class:`~suitkit.device.platform.Platform`;
- :class:`~suitkit.device.memory.MemoryPlatform` (tests) and
  :class:`~suitkit.device.simulated.SimulatedDevice` (a directory, with a bootloader and a fault
  injector) implement the platform;
- :mod:`suitkit.device.report` builds, signs and verifies SUIT_Reports.
"""

"""The device side: the manifest processor, platform interfaces, the simulated device."""

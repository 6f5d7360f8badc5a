"""The device agent (RFC 9019 §3: the device side of the update service's protocol) and the
fleet simulator.

- :mod:`suitkit.agent.core`: one device's cycle: check-in, download with resume, install,
  boot, signed report; persisted step by step;
- :mod:`suitkit.agent.runner`: the main loop: jittered polling, back-off, push wake-ups;
- :mod:`suitkit.agent.state`: ``agent.json`` (credentials) and ``agent/state.json``;
- :mod:`suitkit.agent.wakeup`: listening for MQTT wake-ups (the server publishes them from
  :mod:`suitkit.server.wakeups`);
- :mod:`suitkit.agent.faults` and :mod:`suitkit.agent.fleet`: simulated fleets with faults.

The transports are in :mod:`suitkit.transport`; the commands in :mod:`suitkit.cli.agent`.
"""

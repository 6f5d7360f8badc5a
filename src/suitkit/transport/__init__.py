"""Device-side transports of the update service's device API (RFC 9019: the device talks to
the firmware server and the status tracker).

- :mod:`suitkit.transport.api`: what every transport offers the agent (:class:`DeviceApi`),
  the offer it receives, and the errors it raises (transient or not);
- :mod:`suitkit.transport.http_client`: HTTP(S) (``/device/v1``, bearer token, ``Range``
  resume) over httpx, or over the fleet's lean keep-alive HTTP/1.1 client (``HttpPool``);
- :mod:`suitkit.transport.coap_client` and :mod:`suitkit.transport.coap_server`: the same
  API over CoAP (aiocoap, RFC 7252), block-wise (RFC 7959);
- :mod:`suitkit.transport.coap_fetch`: a processor fetcher for ``coap://`` URIs;
- :mod:`suitkit.transport.mqtt`: a minimal MQTT 3.1.1 client (push wake-ups).

Nothing here is imported by the processor; each module imports its network library itself.
"""

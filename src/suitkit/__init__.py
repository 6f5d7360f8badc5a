"""suitkit: the IETF SUIT firmware update system in Python.

Manifests (draft-ietf-suit-manifest-37) and their COSE authentication, a manifest processor
for devices, CMS-protected firmware packages (RFC 4108), and the distribution roles of RFC 9019.
"""

__version__ = "0.1.0"

"""The SUIT format: codepoints, CBOR, the typed model, authentication."""

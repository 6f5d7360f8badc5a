"""The author side: the manifest builder, signing, severing."""

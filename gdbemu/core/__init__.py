"""The CPU: state, decoding, translation, execution."""

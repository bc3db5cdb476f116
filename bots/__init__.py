"""The bot process (runtime, listener) and, below it, the handlers of the shipped metaservices."""

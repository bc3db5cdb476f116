"""Handlers of the metaservices that ship with botfleet, one module per ticket type."""

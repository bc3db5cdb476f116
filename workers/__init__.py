"""What runs outside the fleet and pulls its work over HTTP (seed 002): the client workers use."""

"""Fleet operations: the supervisord config and client, `up` and `down`, and the fleet's status."""

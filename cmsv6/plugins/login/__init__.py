"""The login server: the cluster's directory ("memory data"), device assignment, hot standby."""

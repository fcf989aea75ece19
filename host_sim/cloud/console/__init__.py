"""`microagent console`: a read-only local web dashboard over what the devices sent."""

# microagent: the MicroPython-compatible core of the security event agent.
VERSION = "0.1.0"

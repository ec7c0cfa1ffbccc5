"""FastAGI: the dialplan's questions to the dialer (``AGI(agi://host:port/script,args)``).

``protocol.py`` reads and writes the wire format; ``server.py`` serves it in the dialer's own
asyncio loop; ``offer.py`` holds the IVR offer's scripts (estimate, number check, register).
"""

"""The built-in data plane: an HTTP/1.1 reverse proxy on asyncio (httptools + uvloop).

Kept light on import: the controller imports ``client`` (the Router adapter) without the server.
"""

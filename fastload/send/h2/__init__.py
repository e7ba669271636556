"""``--transport h2``: gRPC unary calls over HTTP/2 connections of fastload's own.

``frames`` is the wire format, ``answers`` reads the server's header blocks as gRPC statuses,
``connection`` runs one connection on the sender's event loop (the one place request bytes meet
the socket), ``channel`` opens connections, replaces them when the server ends one and ends
calls at their deadline.
"""

"""The sending wing: issued samples become calls to the target.

``base`` is what every sender is (``Sender``) and what it records into (``Records``);
``dispatch`` is the one event loop that builds and sends requests and records their outcomes;
``processes`` runs N of those loops in sender processes for ``--processes N``; the calls go
over ``grpcio`` (a grpc.aio channel, opened by ``channel``) or over ``h2`` (fastload's own
HTTP/2 connections, ``--transport h2``).
"""

"""The sending wing: issued samples become calls to the target.

``base`` is what every sender is (``Sender``) and what it records into (``Records``);
``dispatch`` is the one event loop that builds and sends requests and records their outcomes;
``processes`` runs N of those loops in sender processes for ``--processes N``; ``channel`` opens
the gRPC channels they send on.
"""

"""The targets wing: the wire protocols fastload can drive, the spec's SchedulerService
(``scheduler``) and KServe v2 (``kserve``), each with the compiled encoder that builds its
request bytes (``_encode_scheduler.pyx``, ``_encode_kserve.pyx``, sharing ``_wire.pxd`` and the
tensor pool ``_tensor.pyx``). Each says which method every request goes to, how its bytes are
built, how an answer reads and what to check before traffic (``base.Target``); the sender never
asks which one it holds."""

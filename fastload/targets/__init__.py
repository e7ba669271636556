"""Wire protocols fastload can drive: the spec's SchedulerService and KServe v2. Each module
says which method every request goes to, how its bytes are built, how an answer reads and what
to check before traffic (base.Target); the dispatcher never asks which one it holds."""

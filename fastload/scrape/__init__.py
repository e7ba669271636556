"""The server's side of a run: its Prometheus metrics, scraped from a process of their own while
fastload loads it, and written beside the CSV on the run's clock."""

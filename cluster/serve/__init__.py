"""The Ray Serve HTTP API: `app` (routes), `worker` (runs searches), `jobs`, `schema`, `settings`."""

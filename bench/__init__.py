"""A benchmark anyone can rerun: zoom-proxy beside nginx and a minimal Go proxy.

``python -m bench`` starts everything it needs on loopback (an nginx upstream, the
Zoom emulator for the sign-in, the proxies under test), measures, prints a markdown
table, writes a JSON result and cleans up. ``python -m bench soak`` runs mixed
traffic with token refreshes through zoom-proxy and reports errors and memory drift.

Modules: `procs` (child processes), `procstat` (CPU and memory from /proc), `nginx`
(the upstream and the nginx proxy), `gobuild` (the Go proxy and the upload sink),
`zoomproxy` (zoom-proxy as a real process, and its sign-in), `wrk` (load and its
output), `streaming` (curl transfers), `setup` (options, pinning, starting it all),
`measure` (the measurements), `run` (the benchmark from start to clean-up), `report`
(table and JSON), `soak` (the soak).
"""

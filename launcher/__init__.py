"""What starts the whole service: the `tokenservice` command, `serve` (gRPC and the HTTP bridge
in one process), its workers, the demo tenant, and the standalone bridge.

The one package that may import both the core (server/) and the bridge (http_bridge/): the core
never imports the bridge or this package, and the bridge never imports this package
(tests/project/test_package_graph.py)."""

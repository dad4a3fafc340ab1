"""One module per endpoint family; `http_bridge.app` holds the one route table."""

"""The runtime: builds components from settings and runs the roles (connectors,
processors, sinks, desk) under one supervisor."""

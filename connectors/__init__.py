"""Channel connectors: one package per channel (config, connector, pure parser, README).

Each package depends on `ingest/` only, never on another connector; the runtime finds
them through `ingest.registry`, so importing `ingest` never imports a connector.
"""

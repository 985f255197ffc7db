"""A Qdrant-compatible REST surface, so an unmodified `qdrant-client` works against Nestor (docs/reference/qdrant.md).

Routers validate and delegate; the translation to and from the engine lives in its own modules:
`config` (collections), `points` (vectors and records), `filters`, `query` (one function, `plan`),
`updates` / `mutate` / `payload_ops` (writes)."""

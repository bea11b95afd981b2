"""Webhooks: signed HTTP POSTs of the ticker's events to partners' and apps' servers
(docs/webhooks.md). `rules` holds the pure rules, `store` the durable state on either
store, `sender` one HTTP attempt, `worker` the queueing and delivery loops, `api` the
routes and `cli` the `ticker webhooks` commands."""

"""Web Push: readers subscribe from the browser, and flashes reach them with the page closed.

`rules` holds the pure rules (what a subscription must be, who gets which item, the headers
of a push message, backoff); `store` keeps keys, subscriptions and what was delivered, in
the service's own store; `sender` encrypts (RFC 8291) and signs (RFC 8292) messages;
`worker` follows the event log and delivers; `routes` is the HTTP surface.
"""

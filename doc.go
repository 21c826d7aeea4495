// Package switchboard holds the domain types every Switchboard role shares:
// webhooks, events, deliveries and the API error. It imports no
// infrastructure; the registry, producer and consumer packages translate
// these types to and from SQLite, JetStream and HTTP.
package switchboard

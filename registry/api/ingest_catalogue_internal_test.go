package api

import "net/http"

// catalogueCases check that ingest and webhooks follow one rule for event
// types: what a webhook cannot subscribe to, ingest refuses (422 on type),
// rather than accept it and deliver it nowhere. They follow
// eventTypeCases, which adds ticket.created to the default tenant's
// catalogue only.
func catalogueCases() []specCase {
	const post = http.MethodPost
	return []specCase{
		{name: "events/422/not-in-catalogue", method: post, path: "/v1/events", want: 422,
			body: `{"type": "nosuch.type", "data": {}}`, check: errorsOn("type")},
		{name: "events/422/not-in-catalogue-with-other-errors", method: post, path: "/v1/events", invalid: true, want: 422,
			body: `{"type": "nosuch.type", "data": {}, "occurred_at": "yesterday"}`, check: errorsOn("type", "occurred_at")},
		{name: "events/202/the-tenants-own-type", method: post, path: "/v1/events", want: 202,
			body: `{"type": "ticket.created", "data": {}}`},
		{name: "events/422/another-tenants-type", method: post, path: "/v1/events", key: keyOther, want: 422,
			body: `{"type": "ticket.created", "data": {}}`, check: errorsOn("type")},
	}
}

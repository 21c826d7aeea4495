package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// eventTypeFinder reads the catalogue of the tenant in ctx.
type eventTypeFinder interface {
	FindEventTypes(ctx context.Context) ([]store.EventType, error)
}

// eventTypeStore is what the event-type routes need of the store.
type eventTypeStore interface {
	eventTypeFinder
	CreateEventType(ctx context.Context, t switchboard.EventType) (store.EventType, error)
}

var _ eventTypeStore = (*store.DB)(nil)

// eventTypeAPI serves /v1/event-types.
type eventTypeAPI struct {
	store  eventTypeStore
	logger *slog.Logger
}

// eventTypeBody is an entry of the catalogue as the API shows it.
type eventTypeBody struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Custom      bool   `json:"custom"`
}

// eventTypeInput is the body of POST /v1/event-types. Unknown fields are
// ignored.
type eventTypeInput struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

// list serves GET /v1/event-types?limit=&cursor=: the default types, then
// the tenant's own, a page at a time. The cursor is the name of the last
// type of the previous page. The catalogue is read whole (its quota bounds
// it) and cut here.
func (a *eventTypeAPI) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fe := switchboard.FieldErrors{}
	limit := parseLimit(fe, q)
	if err := fe.Err(); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	types, err := a.store.FindEventTypes(r.Context())
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	start := 0
	if cursor := q.Get("cursor"); cursor != "" {
		i := slices.IndexFunc(types, func(t store.EventType) bool { return t.Name == cursor })
		if i < 0 {
			httpjson.Error(w, r, a.logger, switchboard.FieldErrors{"cursor": {"must be the next_cursor of a previous page"}}.Err())
			return
		}
		start = i + 1
	}
	page := types[start:]
	body := listBody[eventTypeBody]{HasMore: len(page) > limit}
	if body.HasMore {
		page = page[:limit]
		body.NextCursor = page[len(page)-1].Name
	}
	body.Data = make([]eventTypeBody, 0, len(page))
	for _, t := range page {
		body.Data = append(body.Data, eventTypeBody{Name: t.Name, Description: t.Description, Custom: t.Custom})
	}
	httpjson.Write(w, http.StatusOK, body)
}

// create serves POST /v1/event-types.
func (a *eventTypeAPI) create(w http.ResponseWriter, r *http.Request) {
	var in eventTypeInput
	if err := httpjson.Decode(r, &in); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	fe := switchboard.FieldErrors{}
	var t switchboard.EventType
	switch {
	case in.Name == nil || *in.Name == "":
		fe.Add("name", "is required")
	case !switchboard.ValidEventType(*in.Name): // the issue's [a-zA-Z0-9_.-]+, and no empty part between dots for a NATS subject
		fe.Add("name", fmt.Sprintf("must be at most %d characters of letters, digits, '_', '-' and '.', "+
			"with no empty part between dots, e.g. invoice.paid", switchboard.MaxEventTypeLength))
	default:
		t.Name = *in.Name
	}
	if in.Description != nil {
		if utf8.RuneCountInString(*in.Description) > store.MaxEventTypeDescriptionLength {
			fe.Add("description", fmt.Sprintf("must be at most %d characters", store.MaxEventTypeDescriptionLength))
		}
		t.Description = *in.Description
	}
	if err := fe.Err(); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	created, err := a.store.CreateEventType(r.Context(), t)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	httpjson.Write(w, http.StatusCreated, eventTypeBody{Name: created.Name, Description: created.Description, Custom: created.Custom})
}

package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-hq/switchboard/registry/internal/apitest"
	"github.com/switchboard-hq/switchboard/registry/store"
)

type eventTypeJSON struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Custom      bool   `json:"custom"`
}

type eventTypesJSON struct {
	Data       []eventTypeJSON `json:"data"`
	HasMore    bool            `json:"has_more"`
	NextCursor string          `json:"next_cursor"`
}

func defaultEventTypesJSON() []eventTypeJSON {
	var out []eventTypeJSON
	for _, t := range store.DefaultEventTypes {
		out = append(out, eventTypeJSON{Name: t.Name, Description: t.Description})
	}
	return out
}

func TestEventTypes_DefaultsThenCustom(t *testing.T) {
	a := apitest.Start(t, nil)
	got := apitest.Decode[eventTypesJSON](t, apitest.MustGet(t, a, a.Key, "/v1/event-types"))
	if !slices.Equal(got.Data, defaultEventTypesJSON()) {
		t.Errorf("a new tenant's catalogue: %+v", got.Data)
	}

	// A pattern that matches no catalogued type is refused until the type
	// is added.
	hook := `{"name": "billing", "url": "https://example.com/h", "events": ["invoice.*"]}`
	status, b := a.Do(t, http.MethodPost, "/v1/webhooks", a.Key, hook)
	if e := apitest.Decode[apitest.ErrorJSON](t, b); status != 422 || len(e.Errors["events"]) != 1 {
		t.Fatalf("uncatalogued pattern: %d %s", status, b)
	}

	for _, body := range []string{
		`{"name": "invoice.paid", "description": "An invoice was paid."}`,
		`{"name": "a_custom-type"}`,
	} {
		status, b := a.Do(t, http.MethodPost, "/v1/event-types", a.Key, body)
		if got := apitest.Decode[eventTypeJSON](t, b); status != http.StatusCreated || !got.Custom {
			t.Fatalf("POST %s: %d %s", body, status, b)
		}
	}
	got = apitest.Decode[eventTypesJSON](t, apitest.MustGet(t, a, a.Key, "/v1/event-types"))
	want := append(defaultEventTypesJSON(),
		eventTypeJSON{Name: "a_custom-type", Custom: true},
		eventTypeJSON{Name: "invoice.paid", Description: "An invoice was paid.", Custom: true})
	if !slices.Equal(got.Data, want) {
		t.Errorf("catalogue %+v,\nwant %+v", got.Data, want)
	}
	wh := a.Create(t, a.Key, "/v1/webhooks", hook)
	if !slices.Equal(wh.Events, []string{"invoice.*"}) {
		t.Errorf("events %v", wh.Events)
	}

	// A name in the catalogue, default or custom, is taken.
	for _, name := range []string{"invoice.paid", "call.started"} {
		status, b := a.Do(t, http.MethodPost, "/v1/event-types", a.Key, `{"name": "`+name+`"}`)
		if e := apitest.Decode[apitest.ErrorJSON](t, b); status != http.StatusConflict || len(e.Errors["name"]) == 0 || !strings.Contains(e.Message, name) {
			t.Errorf("%s again: %d %s", name, status, b)
		}
	}
	// Names are case-sensitive, as event types are.
	if status, b := a.Do(t, http.MethodPost, "/v1/event-types", a.Key, `{"name": "Invoice.Paid"}`); status != http.StatusCreated {
		t.Errorf("another case: %d %s", status, b)
	}
}

func TestEventTypes_Validation(t *testing.T) {
	a := apitest.Start(t, nil)
	long := strings.Repeat("a", 127) + "." + strings.Repeat("b", 128) // 256 characters
	for _, tc := range []struct {
		name, body string
		want       int
		fields     string
	}{
		{"256 characters", `{"name": "` + long + `"}`, 201, ""},
		{"257 characters", `{"name": "` + long + `b"}`, 422, "name"},
		{"every allowed character", `{"name": "aZ09_-.x"}`, 201, ""},
		{"one part", `{"name": "ping"}`, 201, ""},
		{"missing name", `{"description": "d"}`, 422, "name"},
		{"empty name", `{"name": ""}`, 422, "name"},
		{"space", `{"name": "a b"}`, 422, "name"},
		{"wildcard", `{"name": "call.*"}`, 422, "name"},
		{"star", `{"name": "*"}`, 422, "name"},
		{"empty part", `{"name": "a..b"}`, 422, "name"},
		{"leading dot", `{"name": ".a"}`, 422, "name"},
		{"trailing dot", `{"name": "a."}`, 422, "name"},
		{"NATS wildcard", `{"name": "a.>"}`, 422, "name"},
		{"non-ASCII", `{"name": "caf\u00e9"}`, 422, "name"},
		{"description of 1024", `{"name": "d1024", "description": "` + strings.Repeat("é", store.MaxEventTypeDescriptionLength) + `"}`, 201, ""},
		{"description of 1025", `{"name": "d1025", "description": "` + strings.Repeat("é", store.MaxEventTypeDescriptionLength+1) + `"}`, 422, "description"},
		{"both wrong", `{"name": "a b", "description": "` + strings.Repeat("x", 1025) + `"}`, 422, "description,name"},
		{"name not a string", `{"name": 7}`, 400, ""},
		{"description not a string", `{"name": "x", "description": []}`, 400, ""},
		{"malformed", `{`, 400, ""},
		{"empty body", ``, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, b := a.Do(t, http.MethodPost, "/v1/event-types", a.Key, tc.body)
			if status != tc.want {
				t.Fatalf("status %d, want %d: %s", status, tc.want, b)
			}
			if status == 422 {
				var got []string
				for f := range apitest.Decode[apitest.ErrorJSON](t, b).Errors {
					got = append(got, f)
				}
				slices.Sort(got)
				if strings.Join(got, ",") != tc.fields {
					t.Errorf("failing fields %v, want %s", got, tc.fields)
				}
			}
		})
	}
}

package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// agentStore is what the agent routes need of the store.
type agentStore interface {
	PutAgent(ctx context.Context, id string, name *string) (store.Agent, bool, error)
	FindAgentByID(ctx context.Context, id string) (store.Agent, error)
	FindAgents(ctx context.Context, f store.PageFilter) ([]store.Agent, bool, error)
	DeleteAgent(ctx context.Context, id string) ([]string, error)
}

var _ agentStore = (*store.DB)(nil)

// agentAPI serves /v1/agents.
type agentAPI struct {
	store  agentStore
	mirror webhookMirror
	logger *slog.Logger
}

// agentBody is an agent as the API shows it.
type agentBody struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func newAgentBody(a store.Agent) agentBody {
	return agentBody{ID: a.ID, Name: a.Name, CreatedAt: a.CreatedAt.UTC(), UpdatedAt: a.UpdatedAt.UTC()}
}

// agentInput is the body of PUT /v1/agents/{agent_id}. Unknown fields are
// ignored.
type agentInput struct {
	// Name, when given, replaces the agent's; it may be "".
	Name *string `json:"name"`
}

// put serves PUT /v1/agents/{agent_id}: 201 when it creates the agent, 200
// when it updates it. The body may be left out.
func (a *agentAPI) put(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("agent_id")
	var in agentInput
	// A request without a body creates the agent (or leaves it as it is).
	if hasBody(r) {
		if err := httpjson.Decode(r, &in); err != nil {
			httpjson.Error(w, r, a.logger, err)
			return
		}
	}
	fe := switchboard.FieldErrors{}
	if !switchboard.ValidAgentID(id) {
		fe.Add("agent_id", store.AgentIDRule)
	}
	if in.Name != nil && utf8.RuneCountInString(*in.Name) > switchboard.MaxNameLength {
		fe.Add("name", fmt.Sprintf("must be at most %d characters", switchboard.MaxNameLength))
	}
	if err := fe.Err(); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	agent, created, err := a.store.PutAgent(r.Context(), id, in.Name)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	httpjson.Write(w, status, newAgentBody(agent))
}

// get serves GET /v1/agents/{agent_id}.
func (a *agentAPI) get(w http.ResponseWriter, r *http.Request) {
	agent, err := a.store.FindAgentByID(r.Context(), r.PathValue("agent_id"))
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, newAgentBody(agent))
}

// list serves GET /v1/agents?limit=&cursor=.
func (a *agentAPI) list(w http.ResponseWriter, r *http.Request) {
	f, err := parsePageFilter(r)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	agents, more, err := a.store.FindAgents(r.Context(), f)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	body := listBody[agentBody]{Data: make([]agentBody, 0, len(agents)), HasMore: more}
	for _, agent := range agents {
		body.Data = append(body.Data, newAgentBody(agent))
	}
	if more {
		body.NextCursor = agents[len(agents)-1].ID
	}
	httpjson.Write(w, http.StatusOK, body)
}

// delete serves DELETE /v1/agents/{agent_id}: the agent and its webhooks.
func (a *agentAPI) delete(w http.ResponseWriter, r *http.Request) {
	webhooks, err := a.store.DeleteAgent(r.Context(), r.PathValue("agent_id"))
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	// As for DELETE /v1/webhooks/{id}: the workers drop the webhooks before
	// the client hears they are gone, or the outbox retries it.
	for _, id := range webhooks {
		if err := a.mirror.Flush(context.WithoutCancel(r.Context()), id); err != nil {
			a.logger.WarnContext(r.Context(), "webhook deleted with its agent; mirroring to KV deferred",
				"tenant", switchboard.TenantFromContext(r.Context()), "webhook_id", id, "err", err)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// hasBody reports whether r has a body of at least one byte, chunked or
// not; what it reads to know stays readable.
func hasBody(r *http.Request) bool {
	if r.ContentLength >= 0 {
		return r.ContentLength > 0
	}
	br := bufio.NewReader(r.Body)
	_, err := br.Peek(1)
	r.Body = struct {
		io.Reader
		io.Closer
	}{br, r.Body}
	return err == nil
}

// parsePageFilter reads the limit and cursor of a list's query.
func parsePageFilter(r *http.Request) (store.PageFilter, error) {
	q := r.URL.Query()
	fe := switchboard.FieldErrors{}
	f := store.PageFilter{Limit: parseLimit(fe, q), After: q.Get("cursor")}
	return f, fe.Err()
}

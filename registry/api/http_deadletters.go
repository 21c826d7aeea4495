package api

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// deadLetterAPI serves GET /v1/dead-letters and POST /v1/dead-letters/replay.
type deadLetterAPI struct {
	dead     *control.DeadLetters
	webhooks webhookFinder // whether a webhook exists and can take deliveries (http_test_send.go)
	logger   *slog.Logger
}

func newDeadLetterAPI(js jetstream.JetStream, webhooks webhookFinder, logger *slog.Logger) *deadLetterAPI {
	return &deadLetterAPI{dead: &control.DeadLetters{JS: js}, webhooks: webhooks, logger: logger}
}

// deadLetterBody is a dead letter as the API shows it.
type deadLetterBody struct {
	ID             string     `json:"id"`
	WebhookID      string     `json:"webhook_id"`
	EventID        string     `json:"event_id"`
	EventType      *string    `json:"event_type"`  // null when the body is not an event
	Reason         string     `json:"reason"`      // e.g. retries_exhausted, gone, target_refused, webhook_inactive
	Attempts       int        `json:"attempts"`    // attempts made before it was given up
	LastStatus     *int       `json:"last_status"` // null when the receiver never answered
	LastError      *string    `json:"last_error"`  // null when no attempt was made
	DeadLetteredAt time.Time  `json:"dead_lettered_at"`
	AcceptedAt     *time.Time `json:"accepted_at"` // null when unknown
}

func newDeadLetterBody(dl *control.DeadLetter) deadLetterBody {
	b := deadLetterBody{
		ID:             control.DeadLetterID(dl.Seq),
		WebhookID:      dl.WebhookID,
		EventID:        dl.EventID,
		Reason:         dl.Reason,
		Attempts:       dl.Attempts,
		DeadLetteredAt: dl.DeadLetteredAt,
	}
	if dl.EventType != "" {
		b.EventType = &dl.EventType
	}
	if dl.LastStatus > 0 {
		b.LastStatus = &dl.LastStatus
	}
	if dl.LastError != "" {
		b.LastError = &dl.LastError
	}
	if !dl.AcceptedAt.IsZero() {
		b.AcceptedAt = &dl.AcceptedAt
	}
	return b
}

// list serves GET /v1/dead-letters?webhook_id=&reason=&since=&until=&limit=&cursor=:
// the tenant's dead letters, oldest first. A request reads at most
// MaxDeadLetterScan of them; when its filters select fewer than a page
// among those, the page is short (even empty) with has_more and a cursor
// to go on from.
func (a *deadLetterAPI) list(w http.ResponseWriter, r *http.Request) {
	q, limit, err := parseDeadLetterQuery(r)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	body := listBody[deadLetterBody]{Data: make([]deadLetterBody, 0, min(limit, 64))}
	var lastItem uint64
	res, err := a.dead.Scan(r.Context(), q, func(dl *control.DeadLetter) (bool, error) {
		if len(body.Data) == limit { // one more than the page: there is a next one
			body.HasMore = true
			return false, nil
		}
		body.Data = append(body.Data, newDeadLetterBody(dl))
		lastItem = dl.Seq
		return true, nil
	})
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	switch {
	case body.HasMore:
		body.NextCursor = control.DeadLetterID(lastItem)
	case !res.End: // the scan's bound, not the end
		body.HasMore = true
		body.NextCursor = control.DeadLetterID(res.Last)
	}
	httpjson.Write(w, http.StatusOK, body)
}

// reasonPattern is what a dead-letter reason looks like (see
// consumer/errors.go); anything else cannot match.
var reasonPattern = regexp.MustCompile(`^[a-z][a-z_]{0,63}$`)

// validWebhookID reports whether id could name a webhook: one subject
// token, so that it cannot widen the subject filter.
func validWebhookID(id string) bool { return switchboard.ValidTenantID(id) }

// parseDeadLetterQuery reads the list's query, reporting every bad
// parameter.
func parseDeadLetterQuery(r *http.Request) (control.DeadLetterQuery, int, error) {
	q := r.URL.Query()
	fe := switchboard.FieldErrors{}
	var dq control.DeadLetterQuery
	tenant, authErr := store.TenantFrom(r.Context())
	dq.Tenant = tenant
	limit := parseLimit(fe, q)
	if v := q.Get("cursor"); v != "" {
		seq, ok := control.ParseDeadLetterID(v)
		if !ok {
			fe.Add("cursor", "must be the next_cursor of a previous page")
		}
		dq.After = seq
	}
	dq.WebhookID, dq.Reason = q.Get("webhook_id"), q.Get("reason")
	dq.Since, dq.Until = parseDeadLetterFilters(fe, q.Has("webhook_id"), q.Get("webhook_id"), q.Get("reason"), q.Get("since"), q.Get("until"))
	if authErr != nil {
		return dq, limit, authErr
	}
	return dq, limit, fe.Err()
}

// parseDeadLetterFilters checks the filters the list and the replay of a
// webhook's dead letters share, adding failures to fe, and returns the
// time bounds. hasWebhook says whether webhook_id was given at all (an
// empty one is an error).
func parseDeadLetterFilters(fe switchboard.FieldErrors, hasWebhook bool, webhookID, reason, since, until string) (time.Time, time.Time) {
	if hasWebhook && !validWebhookID(webhookID) {
		fe.Add("webhook_id", "must be a webhook id, e.g. wh_0192...")
	}
	if reason != "" && !reasonPattern.MatchString(reason) {
		fe.Add("reason", "must be a reason, e.g. retries_exhausted, gone, target_refused or webhook_inactive")
	}
	s := parseTimeParam(fe, "since", since)
	u := parseTimeParam(fe, "until", until)
	if !s.IsZero() && !u.IsZero() && u.Before(s) {
		fe.Add("until", "must not be before since")
	}
	return s, u
}

// parseTimeParam parses an RFC 3339 time; "" is no bound.
func parseTimeParam(fe switchboard.FieldErrors, field, v string) time.Time {
	if v == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil || t.Year() < 1 || t.Year() > 9999 {
		fe.Add(field, "must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
		return time.Time{}
	}
	return t.UTC()
}

// replayInput is the body of POST /v1/dead-letters/replay: ids, or
// webhook_id with optional filters.
type replayInput struct {
	IDs       []string `json:"ids"`
	WebhookID *string  `json:"webhook_id"`
	Since     *string  `json:"since"`
	Until     *string  `json:"until"`
	Reason    *string  `json:"reason"`
}

// replayBody is the answer of POST /v1/dead-letters/replay.
type replayBody struct {
	Replayed int      `json:"replayed"`
	NotFound []string `json:"not_found"` // ids that are no dead letter of the tenant (any more)
	HasMore  bool     `json:"has_more"`  // webhook_id: more remain; send the same request again
}

// replay serves POST /v1/dead-letters/replay: each dead letter selected is
// queued for delivery again with a fresh retry budget, then deleted from
// the dead letters. A webhook that was deleted or is not active cannot take
// them: the request is refused (409, naming it) and nothing is replayed.
func (a *deadLetterAPI) replay(w http.ResponseWriter, r *http.Request) {
	var in replayInput
	if err := httpjson.Decode(r, &in); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	tenant, err := store.TenantFrom(r.Context())
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	var out replayBody
	if in.WebhookID != nil {
		out, err = a.replayWebhook(r.Context(), tenant, in)
	} else {
		out, err = a.replayIDs(r.Context(), tenant, in)
	}
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	if out.Replayed > 0 { // an operator's action that resends to receivers: worth a line
		a.logger.InfoContext(r.Context(), "dead letters replayed", "tenant", tenant, "webhook_id", deref(in.WebhookID),
			"replayed", out.Replayed, "not_found", len(out.NotFound), "actor", switchboard.ActorFromContext(r.Context()))
	}
	httpjson.Write(w, http.StatusAccepted, out)
}

// replayIDs replays the dead letters in.IDs names.
func (a *deadLetterAPI) replayIDs(ctx context.Context, tenant string, in replayInput) (replayBody, error) {
	out := replayBody{NotFound: []string{}}
	seqs, err := parseReplayIDs(in)
	if err != nil {
		return out, err
	}

	stream, err := a.dead.Stream(ctx)
	if err != nil {
		return out, err
	}
	// First the webhooks: all of them must take deliveries, or nothing is
	// replayed. Bodies are not kept between the passes, to bound memory.
	found := seqs[:0]
	var webhooks []string
	for _, seq := range seqs {
		dl, err := a.dead.Get(ctx, stream, tenant, seq)
		if switchboard.ErrorCode(err) == switchboard.ENOTFOUND {
			out.NotFound = append(out.NotFound, control.DeadLetterID(seq))
			continue
		}
		if err != nil {
			return out, err
		}
		found = append(found, seq)
		if !slices.Contains(webhooks, dl.WebhookID) {
			webhooks = append(webhooks, dl.WebhookID)
		}
	}
	if err := a.checkWebhooks(ctx, webhooks, false); err != nil {
		return out, err
	}
	for _, seq := range found {
		dl, err := a.dead.Get(ctx, stream, tenant, seq)
		if switchboard.ErrorCode(err) == switchboard.ENOTFOUND { // replayed meanwhile by another request
			out.NotFound = append(out.NotFound, control.DeadLetterID(seq))
			continue
		}
		if err != nil {
			return out, err
		}
		if err := a.dead.Replay(ctx, stream, dl); err != nil {
			return out, err
		}
		out.Replayed++
	}
	slices.SortFunc(out.NotFound, func(x, y string) int {
		sx, _ := control.ParseDeadLetterID(x)
		sy, _ := control.ParseDeadLetterID(y)
		return cmp.Compare(sx, sy)
	})
	return out, nil
}

// replayWebhook replays up to MaxReplay of one webhook's dead letters that
// in's filters select, oldest first; has_more says whether more remain.
// Only those stored before the request are read, so dead letters that
// replays make while it runs are not replayed again by it.
func (a *deadLetterAPI) replayWebhook(ctx context.Context, tenant string, in replayInput) (replayBody, error) {
	out := replayBody{NotFound: []string{}}
	fe := switchboard.FieldErrors{}
	if in.IDs != nil {
		fe.Add("ids", "give ids or webhook_id, not both")
	}
	q := control.DeadLetterQuery{Tenant: tenant, WebhookID: *in.WebhookID}
	q.Reason = deref(in.Reason)
	q.Since, q.Until = parseDeadLetterFilters(fe, true, q.WebhookID, q.Reason, deref(in.Since), deref(in.Until))
	if err := fe.Err(); err != nil {
		return out, err
	}
	if err := a.checkWebhooks(ctx, []string{q.WebhookID}, true); err != nil {
		return out, err
	}
	stream, err := a.dead.Stream(ctx)
	if err != nil {
		return out, err
	}
	q.Through = stream.CachedInfo().State.LastSeq
	if q.Through == 0 {
		return out, nil
	}
	res, err := a.dead.Scan(ctx, q, func(dl *control.DeadLetter) (bool, error) {
		if err := a.dead.Replay(ctx, stream, dl); err != nil {
			return false, err
		}
		out.Replayed++
		return out.Replayed < control.MaxReplay, nil
	})
	if err != nil {
		return out, err
	}
	out.HasMore = !res.End
	return out, nil
}

// checkWebhooks returns nil when every webhook exists in the tenant and is
// active, else an ECONFLICT naming each that is not (or, when
// missingIsNotFound, ENOTFOUND for one that does not exist).
func (a *deadLetterAPI) checkWebhooks(ctx context.Context, ids []string, missingIsNotFound bool) error {
	fe := switchboard.FieldErrors{}
	var refused []string
	for _, id := range ids {
		wh, err := a.webhooks.FindWebhookByID(ctx, id)
		switch {
		case switchboard.ErrorCode(err) == switchboard.ENOTFOUND && missingIsNotFound:
			return switchboard.Errorf(switchboard.ENOTFOUND, "Webhook %s not found.", id)
		case switchboard.ErrorCode(err) == switchboard.ENOTFOUND:
			fe.Add("webhook_id", fmt.Sprintf("%s was deleted; its dead letters cannot be delivered", id))
		case err != nil:
			return err
		case wh.Status != switchboard.StatusActive:
			fe.Add("webhook_id", fmt.Sprintf("%s is %s; set its status to active, then replay", id, wh.Status))
		default:
			continue
		}
		refused = append(refused, id)
	}
	if len(refused) == 0 {
		return nil
	}
	return &switchboard.Error{
		Code:    switchboard.ECONFLICT,
		Message: fmt.Sprintf("Webhook %s cannot take deliveries; nothing was replayed.", strings.Join(refused, ", ")),
		Fields:  fe,
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

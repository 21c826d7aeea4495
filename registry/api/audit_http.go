package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/registry/control"
	"github.com/switchboard-hq/switchboard/registry/store"
)

// auditAPI serves GET /v1/audit, for admin keys: the audit of every
// tenant's deliveries (RunAudit).
type auditAPI struct {
	db     *store.DB
	js     jetstream.JetStream
	logger *slog.Logger
}

// audit serves GET /v1/audit?since=&grace=&limit=.
func (a *auditAPI) audit(w http.ResponseWriter, r *http.Request) {
	o, err := parseAuditOptions(r.URL.Query(), time.Now())
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	rep, err := control.RunAudit(r.Context(), a.db, a.js, o)
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	httpjson.Write(w, http.StatusOK, rep)
}

// parseAuditOptions reads the audit's query, reporting every bad
// parameter: since, a duration back from now ("1h") or an RFC 3339 time,
// DefaultAuditWindow when absent; grace, a duration; limit.
func parseAuditOptions(q url.Values, now time.Time) (control.AuditOptions, error) {
	fe := switchboard.FieldErrors{}
	o := control.AuditOptions{Since: now.Add(-control.DefaultAuditWindow), Grace: control.DefaultAuditGrace, Limit: control.DefaultAuditLimit}
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			o.Since = now.Add(-d)
			if d <= 0 {
				fe.Add("since", "must be a positive duration")
			}
		} else if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			o.Since = t
			if !t.Before(now) {
				fe.Add("since", "must be in the past")
			}
		} else {
			fe.Add("since", "must be a duration, e.g. 1h, or an RFC 3339 time")
		}
		if now.Sub(o.Since) > control.MaxAuditWindow {
			fe.Add("since", fmt.Sprintf("must be at most %v ago", control.MaxAuditWindow))
		}
	}
	if v := q.Get("grace"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > 24*time.Hour {
			fe.Add("grace", "must be a duration between 1s and 24h")
		}
		o.Grace = d
	}
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > control.MaxAuditLimit {
			fe.Add("limit", fmt.Sprintf("must be an integer between 1 and %d", control.MaxAuditLimit))
		}
		o.Limit = n
	}
	return o, fe.Err()
}

package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/switchboard-hq/switchboard"
	"github.com/switchboard-hq/switchboard/internal/httpjson"
	"github.com/switchboard-hq/switchboard/registry/control"
)

// recoverEvents serves POST /v1/webhooks/{id}/recover?since=RFC3339: it queues
// again, with a fresh retry budget, every event accepted since then that
// matches the webhook (by its current events and agent, whatever its
// status was), was accepted after the webhook was created, and has no
// delivered attempt to it in the attempt log. Events are read from
// SB_EVENTS (so no further back than its retention) and queued to
// SB_DELIVERIES as the matcher queues them, the same body and headers,
// under a Nats-Msg-Id of their own (DeliveryMsgID + the recover call's id):
// the first delivery's id may still be in the duplicates window, and a
// publish retried within this call is deduplicated. At most
// MaxRecoverEvents per call, and at most maxEventScan events read.
//
// Events whose delivery is still retrying are queued too: the receiver may
// get them twice, with the same webhook-id, as at-least-once allows.
func (a *attemptAPI) recoverEvents(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	wh, err := a.store.FindWebhookByID(ctx, r.PathValue("id"))
	if err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	fe := switchboard.FieldErrors{}
	v := r.URL.Query().Get("since")
	since := parseTimeParam(fe, "since", v)
	switch {
	case v == "":
		fe.Add("since", "is required: an RFC 3339 time, e.g. 2026-01-02T15:04:05Z")
	case since.After(time.Now()):
		fe.Add("since", "must not be in the future")
	}
	if err := fe.Err(); err != nil {
		httpjson.Error(w, r, a.logger, err)
		return
	}
	if wh.Status != switchboard.StatusActive {
		httpjson.Error(w, r, a.logger, switchboard.Errorf(switchboard.ECONFLICT,
			"The webhook is %s: set it active before recovering its events, or they would be dead-lettered again.", wh.Status))
		return
	}
	res, err := control.Recover(ctx, a.js, a.store.DeliveredEvents, wh, since)
	if err != nil {
		httpjson.Error(w, r, a.logger, fmt.Errorf("recover webhook %s since %s: %w", wh.ID, v, err))
		return
	}
	a.logger.InfoContext(ctx, "recover queued", "tenant", wh.TenantID, "webhook_id", wh.ID, "recover_id", res.RecoverID,
		"since", res.Since, "queued", res.Queued, "has_more", res.HasMore)
	httpjson.Write(w, http.StatusAccepted, res)
}

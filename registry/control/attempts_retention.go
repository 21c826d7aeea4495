package control

import (
	"context"
	"log/slog"
	"time"
)

// DefaultAttemptBodyRetention is how long an attempt keeps its response
// body excerpt: the largest part of a failed attempt's row, and the part
// least needed once the failure is understood.
const DefaultAttemptBodyRetention = 7 * 24 * time.Hour

// pruneOnce applies the attempt log's limits once: age (Retention), age of
// response bodies (BodyRetention), then size (MaxBytes), logging what each
// removed.
func (in *AttemptIngester) pruneOnce(ctx context.Context, log *slog.Logger) {
	if in.Retention > 0 {
		cutoff := time.Now().Add(-in.Retention)
		n, err := in.DB.PruneAttempts(ctx, cutoff)
		in.logPrune(ctx, log, "pruned", n, err, "retention", in.Retention)
		// The ledger goes with the attempts it is set against.
		n, err = in.DB.PruneMatched(ctx, cutoff)
		in.logPrune(ctx, log, "pruned matched records", n, err, "retention", in.Retention)
	}
	if in.BodyRetention > 0 {
		n, err := in.DB.ClearAttemptBodies(ctx, time.Now().Add(-in.BodyRetention))
		in.logPrune(ctx, log, "cleared response bodies", n, err, "body_retention", in.BodyRetention)
	}
	if in.MaxBytes > 0 {
		n, err := in.DB.PruneAttemptsToSize(ctx, in.MaxBytes)
		in.logPrune(ctx, log, "pruned the oldest to the size cap", n, err, "max_bytes", in.MaxBytes)
	}
}

func (in *AttemptIngester) logPrune(ctx context.Context, log *slog.Logger, what string, n int64, err error, key string, limit any) {
	switch {
	case err != nil && ctx.Err() == nil:
		log.Warn("attempt log: "+what, "err", err)
	case n > 0:
		log.Info("attempt log: "+what, "attempts", n, key, limit)
	}
}

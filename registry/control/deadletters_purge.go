package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-hq/switchboard/internal/streams"
)

// PurgeTenantDeadLetters removes the tenant's dead letters from SB_DEAD and
// returns how many it removed. A missing stream holds none.
func PurgeTenantDeadLetters(ctx context.Context, js jetstream.JetStream, tenantID string) (int, error) {
	s, err := js.Stream(ctx, streams.Dead)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("purge dead letters of tenant %s: %w", tenantID, err)
	}
	subject := streams.DeadPrefix + tenantID + ".>"
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return 0, fmt.Errorf("purge dead letters of tenant %s: %w", tenantID, err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	if n == 0 {
		return 0, nil
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return 0, fmt.Errorf("purge dead letters of tenant %s: %w", tenantID, err)
	}
	return n, nil
}

package store

import (
	"slices"
	"testing"

	"github.com/switchboard-hq/switchboard"
)

// The operational types are in the default catalogue, so that alert hooks
// can subscribe to them (moved from the root package's
// TestIsOperationalEvent with the catalogue).
func TestDefaultEventTypes_Operational(t *testing.T) {
	for _, typ := range []string{switchboard.EventWebhookDisabled, switchboard.EventDeliveryDeadLettered, switchboard.EventWebhookRecovered} {
		if !slices.ContainsFunc(DefaultEventTypes, func(e switchboard.EventType) bool { return e.Name == typ }) {
			t.Errorf("%s is not in the default catalogue", typ)
		}
	}
}

package outbound_test

import (
	"testing"

	"github.com/switchboard-hq/switchboard/signer"
)

func mustSecret(tb testing.TB) string {
	tb.Helper()
	secret, err := signer.NewSecret()
	if err != nil {
		tb.Fatalf("NewSecret: %v", err)
	}
	return secret
}

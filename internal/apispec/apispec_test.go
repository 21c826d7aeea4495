package apispec_test

import (
	"testing"

	"github.com/switchboard-hq/switchboard/internal/apispec"
)

func TestLoad(t *testing.T) {
	s := apispec.Load(t)
	t.Log(s.Operations())
}

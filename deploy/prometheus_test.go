package deploy

import (
	"os/exec"
	"testing"

	"github.com/switchboard-hq/switchboard/internal/testenv"
)

// The Prometheus files pass promtool's own checks, and the alert rules their
// unit tests (prometheus/alerts_test.yml).
func TestPrometheusFiles(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	for _, args := range [][]string{
		{"check", "config", "prometheus/prometheus.yml"},
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

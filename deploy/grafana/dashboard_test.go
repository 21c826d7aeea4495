// Package grafana holds Switchboard's Grafana dashboard and its
// provisioning. Its test is a module of its own (see go.mod) because the
// PromQL parser lives in the prometheus/prometheus module.
package grafana

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// exported reads deploy/metrics.txt, which a test of the main module keeps
// equal to what a running system exports, and returns every series name a
// query may use: a histogram's _bucket, _sum and _count too.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("../metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// up is Prometheus' own, one per target scraped.
	names := map[string]bool{"up": true}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, typ, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("metrics.txt: %q is not \"name type\"", line)
		}
		names[name] = true
		if typ == "histogram" || typ == "summary" {
			names[name+"_sum"], names[name+"_count"] = true, true
		}
		if typ == "histogram" {
			names[name+"_bucket"] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("metrics.txt lists no metric")
	}
	return names
}

// grafanaVars are the dashboard variables the queries use, with values that
// make them PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h")

// metricNames parses a PromQL query and returns the metric names it selects.
func metricNames(t *testing.T, where, expr string) []string {
	t.Helper()
	ast, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", where, expr, err)
		return nil
	}
	var names []string
	parser.Inspect(ast, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			if vs.Name == "" {
				t.Errorf("%s: %q selects series without naming a metric", where, expr)
			}
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// checkNames fails the test for every name Switchboard does not export.
func checkNames(t *testing.T, where string, names []string, known map[string]bool) {
	t.Helper()
	for _, n := range names {
		if !known[n] {
			t.Errorf("%s: metric %s is not one Switchboard exports (deploy/metrics.txt)", where, n)
		}
	}
}

type panel struct {
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"` // a row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func TestDashboard_EveryQueryNamesExportedMetrics(t *testing.T) {
	known := exported(t)
	b, err := os.ReadFile("switchboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string  `json:"uid"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("switchboard.json: %v", err)
	}
	if dash.UID != "switchboard" {
		t.Errorf("uid %q: docs and links use \"switchboard\"", dash.UID)
	}
	var titles []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			titles = append(titles, strings.ToLower(p.Title))
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				checkNames(t, "panel "+p.Title, metricNames(t, "panel "+p.Title, tg.Expr), known)
			}
		}
	}
	walk(dash.Panels)
	// What an operator looks for first (issue 5): each has a panel.
	for _, want := range []string{"throughput", "success ratio", "percentiles", "retries", "dead letters", "consumer lag", "circuit breakers", "webhooks by status"} {
		if !slices.ContainsFunc(titles, func(s string) bool { return strings.Contains(s, want) }) {
			t.Errorf("no panel about %s among %v", want, titles)
		}
	}
}

func TestAlerts_EveryRuleNamesExportedMetrics(t *testing.T) {
	known := exported(t)
	b, err := os.ReadFile("../prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			checkNames(t, "alert "+r.Alert, metricNames(t, "alert "+r.Alert, r.Expr), known)
		}
	}
	if n == 0 {
		t.Error("alerts.yml holds no rule")
	}
}
